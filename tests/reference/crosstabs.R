## Reference values for tests/stages/test_crosstabs.py (tables.crosstabs), from R survey 4.1-1.
##
## Run from the repository root:  Rscript tests/reference/crosstabs.R
## Writes tests/reference/crosstabs_expected.csv (the cells) and
## tests/reference/crosstabs_tests_expected.csv (svychisq). The project's tests read the CSVs;
## they never need R.
##
## Data: ../shared/conformance/data/apistrat.csv (R's data(api) apistrat, as the conformance
## suite writes it). Design: svydesign(id = ~1, strata = ~stype, weights = ~pw, fpc = ~fpc).
## A cell of a column percentage is svyby(~row, ~col, design, svymean) (estimate, se, deff)
## with svyby(~I(row == level), ~col, design, svyciprop, method = "logit") (its interval, on
## degf() of the domain); the Total is svymean / svyciprop on the whole table's base. Row
## percentages swap the two variables. Q is a question made from the api data with don't know
## (8) and refused (9) codes (as tests/stages/test_distribution_estimates.py makes it):
## "valid" cells are of subset(design, Q %in% 1:2) (R's domain estimation: zero weights) and
## their Total of the whole design with Qvalid missing (NA) outside the base, so its interval is
## on degf(design), as the estimate stage makes estimates[].denominator: valid (the columns' df
## are those of each column's base); "all" cells are of factor(Q) with every code. The tests are svychisq(~Qvalid + stype, design) with Qvalid
## missing (NA) outside the base, as the estimate stage's tests of association are made: on the
## whole design (its degrees of freedom), the rows outside the base left out of the table.
suppressPackageStartupMessages(library(survey))
stopifnot(packageVersion("survey") == "4.1.1")

api <- read.csv("../shared/conformance/data/apistrat.csv", stringsAsFactors = FALSE)
api$Q <- ifelse(api$snum %% 11 == 0, 8, ifelse(api$snum %% 13 == 0, 9, ifelse(api$sch.wide == "Yes", 1, 2)))
labels_q <- c("1" = "Yes", "2" = "No", "8" = "Don't know", "9" = "Refused")
api$Qall <- factor(labels_q[as.character(api$Q)], levels = labels_q)
api$Qvalid <- factor(ifelse(api$Q <= 2, labels_q[as.character(api$Q)], NA), levels = labels_q[1:2])
api$stype <- factor(api$stype)
api$awards <- factor(api$awards)
api$sch.wide <- factor(api$sch.wide)
strat <- svydesign(id = ~1, strata = ~stype, weights = ~pw, fpc = ~fpc, data = api)

rows <- list()
add <- function(case, percent, variable, by, domain, level, est, se, ci, df, deff, n) {
  rows[[length(rows) + 1]] <<- data.frame(
    case = case, percent = percent, variable = variable, by = by, domain = domain, level = level,
    estimate = unname(est), se = unname(se), ci_low = unname(ci[1]), ci_high = unname(ci[2]),
    df = df, deff = unname(deff), n = n, stringsAsFactors = FALSE
  )
}

## the shares of `var` within each level of `within` and in the whole base of design `d`
cells <- function(case, percent, d, var, within, d_total = d) {
  f <- as.formula(paste0("~", var))
  g <- as.formula(paste0("~", within))
  m <- svymean(f, d_total, deff = TRUE, na.rm = TRUE)
  x <- d$variables[[var]]
  w <- d$variables[[within]]
  base <- !is.na(x) & !is.na(w) & weights(d, "sampling") != 0
  for (lv in levels(x)) {
    nm <- paste0(var, lv)
    ind <- as.formula(sprintf("~I(%s == \"%s\")", var, lv))
    ci <- svyciprop(ind, d_total, method = "logit", na.rm = TRUE)
    add(case, percent, var, "", "All", lv, coef(m)[nm], SE(m)[nm], confint(ci), degf(d_total), deff(m)[nm], sum(base))
  }
  by <- svyby(f, g, d, svymean, deff = TRUE, na.rm = TRUE)
  for (dom in levels(w)) {
    sub <- subset(d, d$variables[[within]] == dom)
    for (lv in levels(x)) {
      nm <- paste0(var, lv)
      ind <- as.formula(sprintf("~I(%s == \"%s\")", var, lv))
      ci <- svyciprop(ind, sub, method = "logit")
      add(case, percent, var, within, dom, lv, by[dom, nm], by[dom, paste0("se.", nm)], confint(ci), degf(sub),
          by[dom, paste0("DEff.", nm)], sum(base & w == dom))
    }
  }
}

cells("awards_by_stype", "column", strat, "awards", "stype")
cells("awards_by_stype", "row", strat, "stype", "awards")
cells("schwide_by_stype", "column", strat, "sch.wide", "stype")
cells("q_valid_by_stype", "column", subset(strat, !is.na(Qvalid)), "Qvalid", "stype", d_total = strat)
cells("q_all_by_stype", "column", strat, "Qall", "stype")
write.csv(do.call(rbind, rows), "tests/reference/crosstabs_expected.csv", row.names = FALSE)

tests <- list()
for (case in list(list("awards_by_stype", ~awards + stype, strat), list("schwide_by_stype", ~sch.wide + stype, strat),
                  list("q_valid_by_stype", ~Qvalid + stype, strat), list("q_all_by_stype", ~Qall + stype, strat))) {
  for (s in c("F", "Chisq", "Wald", "adjWald")) {
    t <- svychisq(case[[2]], case[[3]], statistic = s)
    p <- t$parameter
    tests[[length(tests) + 1]] <- data.frame(
      case = case[[1]], statistic_type = s, statistic = unname(t$statistic),
      ndf = if ("ndf" %in% names(p)) unname(p["ndf"]) else unname(p["df"]),
      ddf = if ("ddf" %in% names(p)) unname(p["ddf"]) else NA, p_value = unname(t$p.value),
      r_call = paste0("svychisq(", deparse(case[[2]]), ", strat, statistic = \"", s, "\")"), stringsAsFactors = FALSE
    )
  }
}
write.csv(do.call(rbind, tests), "tests/reference/crosstabs_tests_expected.csv", row.names = FALSE)
