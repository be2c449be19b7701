# The benchmark model of bench_glm.py fitted with R survey (4.1-1), compared with our glm and svy's.
#   .venv/bin/python tests/benchmarks/bench_glm.py --rows 1e4 --write-check DIR
#   Rscript tests/benchmarks/bench_glm_check.R DIR
# Prints, per scenario, the largest relative difference from R of each engine's coefficients and SEs.
suppressMessages(library(survey))
dir <- commandArgs(trailingOnly = TRUE)[1]
d <- read.csv(file.path(dir, "data.csv"))
for (v in c("c1", "c2", "c3", "dom")) d[[v]] <- factor(d[[v]])
f <- yb ~ x1 + x2 + x3 + x4 + x5 + x6 + c1 + c2 + c3 + dom
taylor <- svyglm(f, svydesign(ids = ~psu, strata = ~stratum, weights = ~w, data = d), family = quasibinomial())
jk1 <- svyglm(f, svrepdesign(data = d, repweights = "rep[0-9]+", weights = ~w, type = "JK1", scale = 79 / 80),
              family = quasibinomial())
r <- rbind(data.frame(scenario = "taylor", term = names(coef(taylor)), r_coef = coef(taylor), r_se = SE(taylor)),
           data.frame(scenario = "jk1", term = names(coef(jk1)), r_coef = coef(jk1), r_se = SE(jk1)))
py <- read.csv(file.path(dir, "python.csv"))
m <- merge(py, r, by = c("scenario", "term"))
stopifnot(nrow(m) == nrow(py), nrow(m) == nrow(r))
rel <- function(a, b) max(abs(a - b) / abs(b))
cat(sprintf("survey %s, %d rows, %d coefficients\n", packageVersion("survey"), nrow(d), nrow(m) / 2))
for (s in c("taylor", "jk1")) {
  x <- m[m$scenario == s, ]
  cat(sprintf("%-6s  ours: coef %.1e, se %.1e   svy: coef %.1e, se %.1e\n", s,
              rel(x$ours_coef, x$r_coef), rel(x$ours_se, x$r_se), rel(x$svy_coef, x$r_coef), rel(x$svy_se, x$r_se)))
}
