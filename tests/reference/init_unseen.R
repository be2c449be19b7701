# Reference values for tests/test_init.py (issue 14, item 1): the estimates the starter config of
# `survey-pipeline init` asks for on the unseen file the test builds (tests/test_init.py,
# unseen_frame: 240 rows; design.weights: wt_final, no strata or clusters; ci_method logit).
# Rscript tests/reference/init_unseen.R  (from the project root) writes
# tests/reference/init_unseen_expected.csv.
library(survey)  # 4.1-1
i <- 0:239
df <- data.frame(
  region = i %% 3 + 1,
  confianza = c(1, 2, 3, 1, 2, 8, 9, 1, 2, 3)[i %% 10 + 1],
  ingreso = (i * 37) %% 500 + 100,
  wt_final = 1 + (i %% 5) * 0.25
)
d <- svydesign(ids = ~1, weights = ~wt_final, data = df)
valid <- subset(d, confianza %in% c(1, 2, 3))  # the share's base: don't know (8) and refused (9) out
rows <- list()
add <- function(id, domain, est, se, lo, hi) {
  rows[[length(rows) + 1]] <<- data.frame(estimate_id = id, domain = domain, estimate = sprintf("%.17g", est),
                                          se = sprintf("%.17g", se), ci_low = sprintf("%.17g", lo), ci_high = sprintf("%.17g", hi))
}
p <- svyciprop(~I(confianza == 1), valid, method = "logit", df = degf(d))
add("confianza_share", "All", coef(p), SE(p), confint(p)[1], confint(p)[2])
# a domain's share: df of the domain (R: svyciprop on subset(design, region == r)), its base the valid answers
for (r in 1:3) {
  dr <- subset(d, region == r)
  p <- svyciprop(~I(confianza == 1), subset(dr, confianza %in% c(1, 2, 3)), method = "logit", df = degf(dr))
  add("confianza_share", c("Norte", "Centro", "Sur")[r], coef(p), SE(p), confint(p)[1], confint(p)[2])
}
m <- svymean(~ingreso, d)
ci <- confint(m, df = degf(d))
add("ingreso_mean", "All", coef(m), SE(m), ci[1], ci[2])
# a domain's mean: the design's degrees of freedom (confint(svymean(...), df = degf(design)))
for (r in 1:3) {
  m <- svymean(~ingreso, subset(d, region == r))
  ci <- confint(m, df = degf(d))
  add("ingreso_mean", c("Norte", "Centro", "Sur")[r], coef(m), SE(m), ci[1], ci[2])
}
write.csv(do.call(rbind, rows), file.path("tests", "reference", "init_unseen_expected.csv"), row.names = FALSE)
