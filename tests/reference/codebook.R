#!/usr/bin/env Rscript
## tests/reference/codebook.R
##
## Reference values from R `survey` 4.1-1 for the codebook's weighted frequencies
## (export format `codebook`, pipeline/exporters/codebook.py) on R's apistrat data, read from
## ../shared/conformance/data/apistrat.csv (survey's own apistrat, checked below) with the design
## svydesign(id = ~1, strata = ~stype, weights = ~pw, fpc = ~fpc).
##
## Usage, from the project root:   Rscript tests/reference/codebook.R
## Requires: R and the package survey 4.1-1 (Debian 12: r-cran-survey).
## Writes (next to this script) codebook_expected.csv, one row per variable x level x statistic:
##   variable, level (the code; empty for a numeric statistic), statistic (percent, mean, p25,
##   median, p75, min, max), estimate, se, ci_low, ci_high, r_call.
##   percent: svymean(~factor(x), design) (the share of every level) and its logit interval,
##            svyciprop(~I(x == level), design, method = "logit");
##   mean:    svymean(~x, design, na.rm = TRUE), confint(..., df = degf(design));
##   p25, median, p75: svyquantile(~x, design, c(0.25, 0.5, 0.75), na.rm = TRUE) (qrule "math");
##   min, max: of the non-missing values.
## tests/exporters/test_codebook.py compares the pipeline's codebook/codebook.csv with it.
## Numbers are written with %.17g; NA as an empty field. Nothing random.

suppressPackageStartupMessages(library(survey))
options(survey.lonely.psu = "fail", stringsAsFactors = FALSE, warn = 1)
stopifnot(as.character(packageVersion("survey")) == "4.1.1")

args <- commandArgs(trailingOnly = FALSE)
script <- sub("^--file=", "", args[grepl("^--file=", args)])
here <- if (length(script) == 1) dirname(normalizePath(script)) else file.path("tests", "reference")
root <- normalizePath(file.path(here, "..", ".."))

d <- read.csv(file.path(root, "..", "shared", "conformance", "data", "apistrat.csv"), stringsAsFactors = FALSE)
data(api, package = "survey")
for (v in c("pw", "fpc", "api00", "meals", "enroll", "avg.ed", "target", "acs.k3"))
  stopifnot(isTRUE(all.equal(d[[v]], as.numeric(apistrat[[v]]), tolerance = 0)))
design <- svydesign(id = ~1, strata = ~stype, weights = ~pw, fpc = ~fpc, data = d)
DF <- degf(design)

CATEGORICAL <- c("awards", "sch.wide", "both", "comp.imp", "yr.rnd")
NUMERIC <- c("api00", "meals", "enroll", "avg.ed", "target", "acs.k3")

rows <- list()
add <- function(variable, level, statistic, estimate, se, ci_low, ci_high, r_call) {
  rows[[length(rows) + 1]] <<- data.frame(variable = variable, level = level, statistic = statistic,
    estimate = unname(estimate), se = unname(se), ci_low = unname(ci_low), ci_high = unname(ci_high), r_call = r_call)
}

for (v in CATEGORICAL) {
  f <- as.formula(paste0("~factor(`", v, "`)"))
  m <- svymean(f, design)
  lvs <- sort(unique(d[[v]]))
  stopifnot(length(coef(m)) == length(lvs))
  for (k in seq_along(lvs)) {
    lv <- lvs[k]
    p <- svyciprop(as.formula(paste0("~I(`", v, "` == '", lv, "')")), design, method = "logit")
    ci <- attr(p, "ci")
    key <- k  # svymean's levels are the sorted codes
    stopifnot(isTRUE(all.equal(unname(coef(m)[key]), as.numeric(p))))
    add(v, lv, "percent", coef(m)[key], SE(m)[key], ci[1], ci[2],
        sprintf("svymean(~factor(%s), design); svyciprop(~I(%s == '%s'), design, method = 'logit')", v, v, lv))
  }
}
for (v in NUMERIC) {
  f <- as.formula(paste0("~`", v, "`"))
  m <- svymean(f, design, na.rm = TRUE)
  ci <- confint(m, df = DF)
  add(v, "", "mean", coef(m), SE(m), ci[1, 1], ci[1, 2], sprintf("confint(svymean(~%s, design, na.rm = TRUE), df = degf(design))", v))
  q <- svyquantile(f, design, c(0.25, 0.5, 0.75), na.rm = TRUE)
  qs <- q[[1]][, "quantile"]
  for (k in 1:3) add(v, "", c("p25", "median", "p75")[k], qs[k], NA, NA, NA,
                     sprintf("svyquantile(~%s, design, c(0.25, 0.5, 0.75), na.rm = TRUE)", v))
  add(v, "", "min", min(d[[v]], na.rm = TRUE), NA, NA, NA, sprintf("min(%s, na.rm = TRUE)", v))
  add(v, "", "max", max(d[[v]], na.rm = TRUE), NA, NA, NA, sprintf("max(%s, na.rm = TRUE)", v))
}

out <- do.call(rbind, rows)
for (col in c("estimate", "se", "ci_low", "ci_high"))
  out[[col]] <- ifelse(is.na(out[[col]]), "", sprintf("%.17g", out[[col]]))
write.csv(out, file.path(here, "codebook_expected.csv"), row.names = FALSE, na = "", quote = c(1, 2, 3, 8))
cat("wrote", nrow(out), "rows to", file.path(here, "codebook_expected.csv"), "\n")
