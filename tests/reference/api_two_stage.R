#!/usr/bin/env Rscript
## tests/reference/api_two_stage.R
##
## Reference values from R `survey` 4.1-1 for the example study configs/api_two_stage.yaml
## (the California API two-stage cluster sample, raw/api_two_stage.csv = survey's apiclus2).
##
## Usage, from the project root:   Rscript tests/reference/api_two_stage.R
## Requires: R (4.2.2 here) and the package survey 4.1-1 (Debian 12: r-cran-survey).
## Writes (next to this script):
##   api_two_stage_expected.csv   one row per estimate x domain x level of the config:
##                                estimate_id, domain, level, estimate, se, ci_low, ci_high, df
##                                (ids, domains and levels spelled as the pipeline's estimates.csv
##                                spells them), plus the R call of each row in r_call;
##                                tests/test_example_api.py compares the pipeline's run with it.
##   api_two_stage_contrasts.csv  references for the next slice (domain differences, an item
##                                difference, a stype x awards crosstab and its svychisq tests);
##                                not tested yet.
## Numbers are written with %.17g (the exact double R computed); NA as an empty field.
## The output is the same from one run to the next (nothing random).

suppressPackageStartupMessages(library(survey))
options(survey.lonely.psu = "fail", survey.ultimate.cluster = FALSE,
        survey.adjust.domain.lonely = FALSE, stringsAsFactors = FALSE, warn = 1)
stopifnot(as.character(packageVersion("survey")) == "4.1.1")

args <- commandArgs(trailingOnly = FALSE)
script <- sub("^--file=", "", args[grepl("^--file=", args)])
here <- if (length(script) == 1) dirname(normalizePath(script)) else file.path("tests", "reference")
root <- normalizePath(file.path(here, "..", ".."))

## The project's raw file, as the pipeline reads it; it must be survey's own apiclus2.
api <- read.csv(file.path(root, "raw", "api_two_stage.csv"), stringsAsFactors = FALSE)
data(api, package = "survey")
for (v in c("dnum", "snum", "fpc1", "fpc2", "pw", "api00", "api99", "enroll", "api.stu"))
  stopifnot(isTRUE(all.equal(api[[v]], as.numeric(apiclus2[[v]]), tolerance = 0)))
for (v in c("stype", "sch.wide", "awards"))
  stopifnot(identical(api[[v]], as.character(apiclus2[[v]])))
api$stype <- factor(api$stype)        # levels E, H, M
api$awards <- factor(api$awards)      # levels No, Yes
api$sch.wide <- factor(api$sch.wide)  # levels No, Yes

design <- svydesign(id = ~dnum + snum, fpc = ~fpc1 + fpc2, weights = ~pw, data = api)
DF <- degf(design)                    # 39: 40 districts - 1
stopifnot(DF == 39)
Q <- qt(0.975, DF)
STYPES <- levels(api$stype)

## a domain's design, as svyby makes it (design[rows of the domain, ]), and its degrees of freedom
dom_design <- function(s) design[api$stype == s, ]
dom_df <- function(s) degf(dom_design(s))

rows <- list()
add <- function(estimate_id, domain, level, estimate, se, ci_low, ci_high, df, r_call) {
  rows[[length(rows) + 1]] <<- data.frame(
    estimate_id = estimate_id, domain = domain, level = level,
    estimate = unname(estimate), se = unname(se), ci_low = unname(ci_low),
    ci_high = unname(ci_high), df = unname(df), r_call = r_call)
}

## ---------------------------------------------------------------- proportions (logit) ----
## The pipeline's proportions are R's svyciprop(method = "logit") on the design's degrees of
## freedom for the whole sample, and svyby(..., svyciprop, method = "logit", vartype = c("se",
## "ci")) by domain, where svyciprop runs on each domain's design: its df is the domain's degf.
ciprop <- function(estimate_id, term, level, by_stype = TRUE) {
  f <- as.formula(paste0("~I(", term, ")"))
  ci <- svyciprop(f, design, method = "logit")
  add(estimate_id, "All", level, as.vector(ci), sqrt(as.vector(attr(ci, "var"))),
      attr(ci, "ci")[1], attr(ci, "ci")[2], DF,
      sprintf("svyciprop(~I(%s), design, method = \"logit\")", term))
  if (!by_stype) return(invisible())
  r <- svyby(f, ~stype, design, svyciprop, method = "logit", vartype = c("se", "ci"))
  for (i in seq_len(nrow(r))) {
    s <- as.character(r$stype[i])
    add(estimate_id, s, level, r[i, 2], SE(r)[i], r$ci_l[i], r$ci_u[i], dom_df(s),
        sprintf("svyby(~I(%s), ~stype, design, svyciprop, method = \"logit\", vartype = c(\"se\", \"ci\")); df = degf(design[stype == \"%s\", ])", term, s))
  }
}

ciprop("sch_wide_met", 'sch.wide == "Yes"', "Target met")
for (lev in levels(api$awards)) ciprop("awards", sprintf('awards == "%s"', lev), lev)
for (lev in STYPES) ciprop("school_type", sprintf('stype == "%s"', lev), lev, by_stype = FALSE)

## -------------------------------------------------- means, totals, ratios (Wald t, degf) ----
## confint(x, df = degf(design)): estimate -/+ qt(0.975, 39) * se, for the whole sample and
## for every domain (the pipeline's domains keep the whole design's df for these statistics).
wald <- function(estimate_id, x, level, r_call, by = NULL, by_call = "", coef_name = NULL) {
  est <- coef(x); se <- SE(x)
  if (!is.null(coef_name)) { est <- est[coef_name]; se <- se[coef_name] }
  ci <- confint(x, df = DF)
  ci <- if (is.null(coef_name)) ci[1, ] else ci[coef_name, ]
  stopifnot(isTRUE(all.equal(unname(ci), unname(c(est - Q * se, est + Q * se)), tolerance = 1e-12)))
  add(estimate_id, "All", level, est, se, ci[1], ci[2], DF, r_call)
  if (is.null(by)) return(invisible())
  vars <- attr(by, "svyby")$variables
  col <- if (is.null(coef_name)) vars[1] else coef_name
  for (i in seq_len(nrow(by))) {
    b_est <- by[i, col]
    b_se <- as.matrix(SE(by))[i, match(col, vars)]
    add(estimate_id, as.character(by$stype[i]), level, b_est, b_se, b_est - Q * b_se, b_est + Q * b_se,
        DF, by_call)
  }
}

wald("api00_mean", svymean(~api00, design), "", "confint(svymean(~api00, design), df = degf(design))",
     svyby(~api00, ~stype, design, svymean),
     "svyby(~api00, ~stype, design, svymean); estimate -/+ qt(0.975, degf(design)) * se")
wald("api99_mean", svymean(~api99, design), "", "confint(svymean(~api99, design), df = degf(design))",
     svyby(~api99, ~stype, design, svymean),
     "svyby(~api99, ~stype, design, svymean); estimate -/+ qt(0.975, degf(design)) * se")
wald("enroll_mean", svymean(~enroll, design, na.rm = TRUE), "",
     "confint(svymean(~enroll, design, na.rm = TRUE), df = degf(design))",
     svyby(~enroll, ~stype, design, svymean, na.rm = TRUE),
     "svyby(~enroll, ~stype, design, svymean, na.rm = TRUE); estimate -/+ qt(0.975, degf(design)) * se")
wald("enroll_total", svytotal(~enroll, design, na.rm = TRUE), "",
     "confint(svytotal(~enroll, design, na.rm = TRUE), df = degf(design))",
     svyby(~enroll, ~stype, design, svytotal, na.rm = TRUE),
     "svyby(~enroll, ~stype, design, svytotal, na.rm = TRUE); estimate -/+ qt(0.975, degf(design)) * se")
wald("awards_schools", svytotal(~awards, design), "Eligible",
     "confint(svytotal(~awards, design), df = degf(design))[\"awardsYes\", ]",
     svyby(~awards, ~stype, design, svytotal),
     "svyby(~awards, ~stype, design, svytotal)[, \"awardsYes\"]; estimate -/+ qt(0.975, degf(design)) * se",
     coef_name = "awardsYes")
wald("tested_share", svyratio(~api.stu, ~enroll, design, na.rm = TRUE), "",
     "confint(svyratio(~api.stu, ~enroll, design, na.rm = TRUE), df = degf(design))",
     svyby(~api.stu, ~stype, design, svyratio, denominator = ~enroll, na.rm = TRUE),
     "svyby(~api.stu, ~stype, design, svyratio, denominator = ~enroll, na.rm = TRUE); estimate -/+ qt(0.975, degf(design)) * se")

## --------------------------------------------------------------------------- quantiles ----
## svyquantile(..., qrule = "math", ci = TRUE, se = TRUE): the default Woodruff interval
## (interval.type = "mean") with qt(., degf(D)) of the design it runs on; se = (ci_high -
## ci_low) / (2 qt(0.975, degf(D))). By domain on design[stype == s, ], which is what svyby
## hands svyquantile (checked below against svyby for the median).
PROBS <- c(0.25, 0.5, 0.75)
quant <- function(D, domain, r_call) {
  q <- svyquantile(~api00, D, quantiles = PROBS, ci = TRUE, se = TRUE, qrule = "math")$api00
  for (k in seq_along(PROBS))
    add("api00_quantiles", domain, sprintf("p%g", 100 * PROBS[k]), q[k, 1], q[k, 4], q[k, 2], q[k, 3],
        degf(D), r_call)
}
quant(design, "All", "svyquantile(~api00, design, quantiles = c(0.25, 0.5, 0.75), ci = TRUE, se = TRUE, qrule = \"math\")")
for (s in STYPES)
  quant(dom_design(s), s, sprintf("svyquantile(~api00, design[stype == \"%s\", ], quantiles = c(0.25, 0.5, 0.75), ci = TRUE, se = TRUE, qrule = \"math\")", s))
med <- svyby(~api00, ~stype, design, svyquantile, quantiles = 0.5, ci = TRUE, qrule = "math", vartype = c("se", "ci"))
for (s in STYPES) {
  mine <- svyquantile(~api00, dom_design(s), quantiles = 0.5, ci = TRUE, se = TRUE, qrule = "math")$api00
  stopifnot(identical(unname(mine[1, 1]), unname(med[s, 2])),
            identical(unname(mine[1, 2]), unname(med$ci_l[med$stype == s])),
            identical(unname(mine[1, 3]), unname(med$ci_u[med$stype == s])))
}

## ------------------------------------------------------------------------------- write ----
fmt <- function(x) {
  out <- sprintf("%.17g", x)
  out[is.na(x)] <- ""
  out[!is.na(x) & x == Inf] <- "inf"
  out[!is.na(x) & x == -Inf] <- "-inf"
  out
}
write_rows <- function(df, path) {
  num <- vapply(df, is.numeric, logical(1))
  for (v in names(df)[num]) df[[v]] <- fmt(df[[v]])
  for (v in names(df)[!num]) df[[v]] <- ifelse(is.na(df[[v]]), "", paste0("\"", gsub("\"", "\"\"", df[[v]]), "\""))
  lines <- c(paste(names(df), collapse = ","), apply(as.matrix(df), 1, paste, collapse = ","))
  writeLines(lines, path)
}

expected <- do.call(rbind, rows)
stopifnot(nrow(expected) == 51, !anyDuplicated(expected[, c("estimate_id", "domain", "level")]))
write_rows(expected, file.path(here, "api_two_stage_expected.csv"))

## ============================================== references for the next slice (untested) ====
## api_two_stage_contrasts.csv columns: kind (domain_difference, item_difference,
## crosstab_column_percent, crosstab_row_percent, svychisq), contrast, domain, level, estimate,
## se, ci_low, ci_high, df, p_value, statistic, ndf, ddf, r_call (empty where not applicable).
## The differences use degf(design) = 39 for the t interval and the p-value, as asked for the
## next slice; the banners' letters of the pipeline today test a domain difference on the
## smaller of the two domains' df (13 for E vs H), with the same difference and se.
crows <- list()
cadd <- function(kind, contrast, domain, level, estimate, se, ci_low, ci_high, df, p_value = NA_real_,
                 statistic = NA_real_, ndf = NA_real_, ddf = NA_real_, r_call = "") {
  crows[[length(crows) + 1]] <<- data.frame(
    kind = kind, contrast = contrast, domain = domain, level = level, estimate = unname(estimate),
    se = unname(se), ci_low = unname(ci_low), ci_high = unname(ci_high), df = unname(df),
    p_value = unname(p_value), statistic = unname(statistic), ndf = unname(ndf), ddf = unname(ddf),
    r_call = r_call)
}
## a contrast: estimate, se, estimate -/+ qt(0.975, degf(design)) se, 2 pt(-|t|, degf(design))
tcontrast <- function(kind, contrast, domain, x, r_call) {
  est <- as.vector(coef(x)); se <- as.vector(SE(x))
  cadd(kind, contrast, domain, "", est, se, est - Q * se, est + Q * se, DF,
       2 * pt(-abs(est / se), DF), r_call = r_call)
}

## (a) differences between domains, with the domains' covariance (svyby(covmat = TRUE))
design01 <- update(design, sch_wide_yes = as.numeric(sch.wide == "Yes"))
PAIRS <- list(c("E", "H"), c("E", "M"), c("H", "M"))
for (item in list(list(id = "api00_mean", f = ~api00, d = design, txt = "~api00"),
                  list(id = "sch_wide_met", f = ~sch_wide_yes, d = design01,
                       txt = "~sch_wide_yes (= as.numeric(sch.wide == \"Yes\"))"))) {
  b <- svyby(item$f, ~stype, item$d, svymean, covmat = TRUE)
  for (p in PAIRS) {
    w <- setNames(c(1, -1), p)
    tcontrast("domain_difference", paste0(item$id, ":", p[1], "-", p[2]), paste0(p[1], "-", p[2]),
              svycontrast(b, w),
              sprintf("svycontrast(svyby(%s, ~stype, design, svymean, covmat = TRUE), c(%s = 1, %s = -1))",
                      item$txt, p[1], p[2]))
  }
}

## (b) an item difference, api00 - api99, overall and by stype
tcontrast("item_difference", "api00-api99", "All",
          svycontrast(svymean(~api00 + api99, design), quote(api00 - api99)),
          "svycontrast(svymean(~api00 + api99, design), quote(api00 - api99))")
b <- svyby(~api00 + api99, ~stype, design, svymean, covmat = TRUE)
for (s in STYPES) {
  expr <- parse(text = sprintf("`%s:api00` - `%s:api99`", s, s))[[1]]
  tcontrast("item_difference", "api00-api99", s, svycontrast(b, expr),
            sprintf("svycontrast(svyby(~api00 + api99, ~stype, design, svymean, covmat = TRUE), quote(`%s:api00` - `%s:api99`))", s, s))
}

## (c) the crosstab stype x awards: column percentages (stype within awards) and row
## percentages (awards within stype), each cell as the pipeline's proportions are (svyciprop
## logit on the domain's design, df = the domain's degf); svyby(svymean) gives the same shares (to
## about 1e-9: the logit estimate is the expit of a glm coefficient, not the weighted mean).
crosstab <- function(kind, var, by, var_levels, by_levels) {
  means <- svyby(as.formula(paste0("~", var)), as.formula(paste0("~", by)), design, svymean)
  for (lev in var_levels) {
    f <- as.formula(sprintf("~I(%s == \"%s\")", var, lev))
    r <- svyby(f, as.formula(paste0("~", by)), design, svyciprop, method = "logit", vartype = c("se", "ci"))
    for (i in seq_len(nrow(r))) {
      d <- as.character(r[[by]][i])
      stopifnot(isTRUE(all.equal(r[i, 2], means[d, paste0(var, lev)], tolerance = 1e-8)))
      cadd(kind, paste0(var, " within ", by), paste0(by, "=", d), lev, r[i, 2], SE(r)[i], r$ci_l[i], r$ci_u[i],
           degf(design[api[[by]] == d, ]),
           r_call = sprintf("svyby(~I(%s == \"%s\"), ~%s, design, svyciprop, method = \"logit\", vartype = c(\"se\", \"ci\")) [= svyby(~%s, ~%s, design, svymean)]; df = degf(design[%s == \"%s\", ])",
                            var, lev, by, var, by, by, d))
    }
  }
}
crosstab("crosstab_column_percent", "stype", "awards", STYPES, levels(api$awards))
crosstab("crosstab_row_percent", "awards", "stype", levels(api$awards), STYPES)
for (st in c("F", "Chisq")) {
  x <- svychisq(~stype + awards, design, statistic = st)
  p <- x$parameter
  cadd("svychisq", paste0("stype+awards:", st), "All", names(x$statistic), NA, NA, NA, NA, DF,
       p_value = x$p.value, statistic = x$statistic,
       ndf = if ("ndf" %in% names(p)) p[["ndf"]] else p[["df"]],
       ddf = if ("ddf" %in% names(p)) p[["ddf"]] else NA_real_,
       r_call = sprintf("svychisq(~stype + awards, design, statistic = \"%s\") (%s)", st, x$method))
}

contrasts <- do.call(rbind, crows)
write_rows(contrasts, file.path(here, "api_two_stage_contrasts.csv"))
cat(sprintf("wrote %d reference rows and %d contrast rows to %s\n", nrow(expected), nrow(contrasts), here))
