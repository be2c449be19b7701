#!/usr/bin/env Rscript
## tests/reference/models.R
##
## Reference values from R `survey` 4.1-1 for design-based GLMs beyond the conformance suite's
## cases (pipeline.survey.models.glm): a domain (svyglm(..., subset = )), lonely-PSU policies,
## a chosen reference level, a factor x factor interaction, a model without intercept.
##
## Usage, from the project root:   Rscript tests/reference/models.R
## Requires: R (4.2.2 here), survey 4.1-1; reads ../shared/conformance/data (the survey package's
## example data). Writes models_expected.csv next to this script: case, design, lonely_psu,
## formula (as pipeline.survey.formula spells it), family, subset (a polars-free description the
## test maps to a mask), term, estimate, se, df_resid, dispersion, n, r_call.
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
  d$stype <- factor(d$stype, levels = c("E", "H", "M")); d$stypeM <- relevel(d$stype, ref = "M"); assign(nm, d)
}
nhanes$race <- factor(nhanes$race); nhanes$agecat <- factor(nhanes$agecat)
nh_lonely <- nhanes[!(nhanes$SDMVSTRA == 89 & nhanes$SDMVPSU == 2), ]

strat <- svydesign(id = ~1, strata = ~stype, weights = ~pw, fpc = ~fpc, data = apistrat)
clus1 <- svydesign(id = ~dnum, weights = ~pw, fpc = ~fpc, data = apiclus1)
clus1_jk1 <- as.svrepdesign(clus1, type = "JK1")
nhanes_lonely <- svydesign(id = ~SDMVPSU, strata = ~SDMVSTRA, weights = ~WTMEC2YR, nest = TRUE, data = nh_lonely)

rows <- list()
add <- function(id, dname, des, f, ours, fam, subset_txt = "", lonely = "fail", subset = NULL) {
  old <- options(survey.lonely.psu = lonely)
  on.exit(options(old))
  # subset(design, cond) is what svyglm(..., subset = cond) does first (design[cond, ])
  if (!is.null(subset)) des <- eval(bquote(subset(des, .(subset))))
  # svyglm.svyrep.design evaluates its family= argument by name outside this function: make it global
  assign(".fam", fam, envir = globalenv())
  fit <- svyglm(f, design = des, family = .fam)
  s <- summary(fit); cf <- s$coefficients
  rows[[length(rows) + 1]] <<- data.frame(
    case = id, design = dname, lonely_psu = lonely, formula = ours, family = fam$family, subset = subset_txt,
    term = rownames(cf), estimate = sprintf("%.17g", cf[, 1]), se = sprintf("%.17g", cf[, 2]),
    df_resid = fit$df.residual, dispersion = sprintf("%.17g", as.vector(s$dispersion)), n = nrow(fit$model),
    r_call = sprintf("svyglm(%s, design = %s, family = %s%s) [lonely.psu = %s]", deparse(f), dname, fam$family,
                     if (subset_txt == "") "" else paste0(", subset = ", deparse(subset)), lonely))
}
add("domain:strat", "strat", strat, api00 ~ ell + meals, "api00 ~ ell + meals", gaussian(), "stype != 'H'",
    subset = quote(stype != "H"))
add("domain:clus1", "clus1", clus1, sch.wide ~ ell + meals, "sch.wide ~ ell + meals", quasibinomial(), "stype == 'E'",
    subset = quote(stype == "E"))
add("domain:clus1_jk1", "clus1_jk1", clus1_jk1, api00 ~ ell + meals, "api00 ~ ell + meals", gaussian(), "awards == 'Yes'",
    subset = quote(awards == "Yes"))
add("ref:clus1", "clus1", clus1, api00 ~ stypeM + ell, "api00 ~ C(stype, ref = M) + ell", gaussian())
add("factor_interaction:strat", "strat", strat, api00 ~ stype * sch.wide, "api00 ~ stype * sch.wide", gaussian())
add("no_intercept:clus1", "clus1", clus1, api00 ~ stype + ell - 1, "api00 ~ stype + ell - 1", gaussian())
for (lp in c("adjust", "average", "remove", "certainty")) {
  add(paste0("lonely_", lp, ":nhanes_lonely"), "nhanes_lonely", nhanes_lonely, HI_CHOL ~ race + agecat,
      "HI_CHOL ~ race + agecat", quasibinomial(), lonely = lp)
}
out <- do.call(rbind, rows)
write.csv(out, file.path(here, "models_expected.csv"), row.names = FALSE, quote = c(1:7, 13))
cat("wrote", file.path(here, "models_expected.csv"), nrow(out), "rows\n")
