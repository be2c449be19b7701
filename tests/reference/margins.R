#!/usr/bin/env Rscript
## tests/reference/margins.R
##
## Reference values from R `survey` 4.1-1 for predictive margins of survey-weighted GLMs
## (pipeline.survey.models.ModelFit.margins), computed by `svypredmeans(adjustmodel, ~g)`:
## the model adjustmodel + g is fitted, every row's prediction with g set to each level is
## averaged with the design weights, variance = design variance of that mean + g' V g.
##
## Usage, from the project root:   Rscript tests/reference/margins.R
## Requires: R (4.2.2 here), survey 4.1-1; reads ../shared/conformance/data (the survey package's
## example data). Writes margins_expected.csv next to this script: case, design, formula
## (the model with g included, as ModelFit fits it), family, variable, level, estimate, se, r_call.
## Numbers with %.17g; nothing random.

suppressPackageStartupMessages(library(survey))
options(survey.lonely.psu = "fail", survey.replicates.mse = FALSE, stringsAsFactors = FALSE, warn = 1)
stopifnot(as.character(packageVersion("survey")) == "4.1.1")

args <- commandArgs(trailingOnly = FALSE)
script <- sub("^--file=", "", args[grepl("^--file=", args)])
here <- if (length(script) == 1) dirname(normalizePath(script)) else file.path("tests", "reference")
data_dir <- normalizePath(file.path(here, "..", "..", "..", "shared", "conformance", "data"))
rd <- function(f) read.csv(file.path(data_dir, f), stringsAsFactors = FALSE)

apistrat <- rd("apistrat.csv"); apiclus1 <- rd("apiclus1.csv"); nhanes <- rd("nhanes.csv")
for (nm in c("apistrat", "apiclus1")) {
  d <- get(nm); d$sch.wide <- factor(d$sch.wide, levels = c("No", "Yes"))
  d$stype <- factor(d$stype, levels = c("E", "H", "M")); assign(nm, d)
}
nhanes$race <- factor(nhanes$race); nhanes$agecat <- factor(nhanes$agecat)
nhanes$RIAGENDR <- factor(nhanes$RIAGENDR)

D <- list()
D$strat <- svydesign(id = ~1, strata = ~stype, weights = ~pw, fpc = ~fpc, data = apistrat)
D$clus1 <- svydesign(id = ~dnum, weights = ~pw, fpc = ~fpc, data = apiclus1)
D$clus1_jk1 <- as.svrepdesign(D$clus1, type = "JK1")
D$nhanes <- svydesign(id = ~SDMVPSU, strata = ~SDMVSTRA, weights = ~WTMEC2YR, nest = TRUE, data = nhanes)

CASES <- list(
  list(id = "logit_stype:strat", design = "strat", f = sch.wide ~ ell + meals, g = ~stype, gname = "stype",
       full = "sch.wide ~ ell + meals + stype", fam = quasibinomial()),
  list(id = "logit_stype:clus1", design = "clus1", f = sch.wide ~ ell + meals, g = ~stype, gname = "stype",
       full = "sch.wide ~ ell + meals + stype", fam = quasibinomial()),
  list(id = "logit_stype:clus1_jk1", design = "clus1_jk1", f = sch.wide ~ ell + meals, g = ~stype, gname = "stype",
       full = "sch.wide ~ ell + meals + stype", fam = quasibinomial()),
  list(id = "logit_race:nhanes", design = "nhanes", f = HI_CHOL ~ agecat + RIAGENDR, g = ~race, gname = "race",
       full = "HI_CHOL ~ agecat + RIAGENDR + race", fam = quasibinomial()),
  list(id = "poisson_stype:strat", design = "strat", f = enroll ~ meals, g = ~stype, gname = "stype",
       full = "enroll ~ meals + stype", fam = quasipoisson())
)
rows <- list()
for (cs in CASES) {
  fit <- svyglm(cs$f, design = D[[cs$design]], family = cs$fam)
  pm <- svypredmeans(fit, cs$g)
  lv <- names(coef(pm)); o <- order(lv)
  rows[[length(rows) + 1]] <- data.frame(
    case = cs$id, design = cs$design, formula = cs$full, family = cs$fam$family, variable = cs$gname,
    level = lv[o], estimate = sprintf("%.17g", as.vector(coef(pm))[o]), se = sprintf("%.17g", as.vector(SE(pm))[o]),
    r_call = sprintf("svypredmeans(svyglm(%s, design = %s, family = %s), %s)", deparse(cs$f), cs$design,
                     cs$fam$family, deparse(cs$g)))
}
out <- do.call(rbind, rows)
write.csv(out, file.path(here, "margins_expected.csv"), row.names = FALSE, quote = c(1:6, 9))
cat("wrote", file.path(here, "margins_expected.csv"), nrow(out), "rows\n")
