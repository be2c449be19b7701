# Reference values for the propensity-model nonresponse adjustment (pipeline/survey/propensity.py),
# R 4.x with survey 4.1-1. Run from the repository root:
#   Rscript tests/reference/propensity.R
# Reads tests/reference/propensity_input.csv (written by tests/reference/propensity_input.py: a
# synthetic delivery's completes, resp = 1, and eligible nonrespondents, resp = 0) and writes
# tests/reference/propensity_expected.csv: model, quantity, name, value.
#
# Model "classes": resp ~ COUNTY + FRAME + SEXAGE (all factors); model "mixed":
# resp ~ COUNTY + FRAME + factor(SEX) + AGE (AGE numeric, SEX = 1 for SEXAGE 1-4).
# The coefficients of glm(family = quasibinomial, weights = w_base) are checked against svyglm's
# (ids = ~1, strata = ~COUNTY, weights = ~w_base) here. glm is given w_base scaled to mean 1, as
# svyglm scales it: with the raw population weights (about 1e4) glm's binomial start values
# (weights * y + 0.5) / (weights + 1) sit at 0 and 1 and it diverges; the coefficients do not depend
# on the weights' scale. The propensity classes are
# cut(p, c(-Inf, svyquantile(~p, qrule = "math") at 0.2, 0.4, 0.6, 0.8, Inf)) with factor
# sum(w) / sum(w over respondents) in each; the inverse propensity factor is
# pmin(1 / p, cap) times sum(w) / sum(w * pmin(1 / p, cap) over respondents), cap = 4.
suppressPackageStartupMessages(library(survey))
stopifnot(packageVersion("survey") == "4.1.1")
d <- read.csv("tests/reference/propensity_input.csv")
d$w1 <- d$w_base / mean(d$w_base)
d$SEX <- ifelse(d$SEXAGE <= 4, 1, 2)
for (v in c("COUNTY", "FRAME", "SEXAGE", "SEX")) d[[v]] <- factor(d[[v]])
des <- svydesign(ids = ~1, strata = ~COUNTY, weights = ~w_base, data = d)
out <- list()
add <- function(model, quantity, name, value) {
  out[[length(out) + 1]] <<- data.frame(model = model, quantity = quantity, name = name, value = value)
}
formulas <- list(classes = resp ~ COUNTY + FRAME + SEXAGE, mixed = resp ~ COUNTY + FRAME + SEX + AGE)
for (m in names(formulas)) {
  f <- formulas[[m]]
  fit <- glm(f, family = quasibinomial, weights = w1, data = d, control = glm.control(epsilon = 1e-12, maxit = 100))
  sfit <- svyglm(f, design = des, family = quasibinomial, control = glm.control(epsilon = 1e-12, maxit = 100))
  stopifnot(max(abs(coef(fit) - coef(sfit))) < 1e-8)
  b <- coef(fit)
  for (k in names(b)) add(m, "coefficient", k, b[[k]])
  p <- fitted(fit)
  d$p <- p
  des2 <- svydesign(ids = ~1, strata = ~COUNTY, weights = ~w_base, data = d)
  q <- svyquantile(~p, des2, quantiles = c(0.2, 0.4, 0.6, 0.8), qrule = "math", ci = FALSE)$p[1, ]
  for (k in seq_along(q)) add(m, "cut", as.character(k), q[[k]])
  cls <- cut(p, c(-Inf, unique(q), Inf))
  w <- d$w_base
  r <- d$resp == 1
  w_all <- tapply(w, cls, sum)
  w_resp <- tapply(w * r, cls, sum)
  units <- tapply(w, cls, length)
  resps <- tapply(r, cls, sum)
  for (k in seq_along(w_all)) {
    add(m, "class_factor", as.character(k), w_all[[k]] / w_resp[[k]])
    add(m, "class_units", as.character(k), units[[k]])
    add(m, "class_respondents", as.character(k), resps[[k]])
  }
  cap <- 4
  f0 <- pmin(1 / p, cap)
  scale <- sum(w) / sum(w * f0 * r)
  fr <- (f0 * scale)[r]
  add(m, "inverse", "scale", scale)
  add(m, "inverse", "capped", sum(1 / p[r] > cap))
  add(m, "inverse", "min", min(fr))
  add(m, "inverse", "max", max(fr))
  add(m, "inverse", "sum_w_factor", sum(w[r] * fr))
  add(m, "inverse", "p_sum", sum(p))
}
res <- do.call(rbind, out)
write.csv(res, "tests/reference/propensity_expected.csv", row.names = FALSE)
cat(sprintf("wrote %d rows to tests/reference/propensity_expected.csv\n", nrow(res)))
