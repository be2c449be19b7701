# Reference values for estimates[].difference (issue 12): R survey 4.1-1, svycontrast on
# estimates made together (svyby(..., covmat = TRUE); svymean/svytotal/svyratio of two variables).
#   Rscript tests/reference/differences.R      (from the project root; ../shared beside it)
# writes tests/reference/differences_expected.csv, read by tests/stages/test_differences.py.
#
# Every difference is a minus b; se from the full covariance; ci and p-value on the design's
# degrees of freedom: estimate -/+ qt(0.975, degf(design)) * se, 2 * pt(-|estimate / se|, degf).
# Two estimates with different missing values (acs.k3 - acs.46) are each on their own base:
# svyratio of the zero-filled values over their observed indicators (covmat = TRUE), which
# gives each the estimate of svymean(~x, na.rm = TRUE) alone.
suppressPackageStartupMessages(library(survey))
stopifnot(packageVersion("survey") == "4.1.1")
data_dir <- file.path("..", "shared", "conformance", "data")
apistrat <- read.csv(file.path(data_dir, "apistrat.csv"))
apiclus1 <- read.csv(file.path(data_dir, "apiclus1.csv"))
designs <- list(
  strat = svydesign(id = ~1, strata = ~stype, weights = ~pw, fpc = ~fpc, data = apistrat),
  clus1 = svydesign(id = ~dnum, weights = ~pw, fpc = ~fpc, data = apiclus1)
)
designs$clus1_jk1 <- as.svrepdesign(designs$clus1, type = "JK1")

rows <- list()
add <- function(design, id, domain, level, x, L) {
  est <- sum(L * coef(x))
  se <- sqrt(as.numeric(t(L) %*% vcov(x) %*% L))
  df <- degf(design_obj)
  q <- qt(0.975, df)
  rows[[length(rows) + 1]] <<- data.frame(
    design = design, estimate_id = id, domain = domain, level = level, estimate = est, se = se, df = df,
    ci_low = est - q * se, ci_high = est + q * se, p_value = 2 * pt(-abs(est / se), df)
  )
}
contrast <- function(x, plus, minus) {
  L <- setNames(rep(0, length(coef(x))), names(coef(x)))
  L[plus] <- 1
  L[minus] <- -1
  L
}
for (design in names(designs)) {
  design_obj <- designs[[design]]
  d <- update(design_obj, sch_yes = as.numeric(sch.wide == "Yes"), awards_yes = as.numeric(awards == "Yes"))
  # domains of one estimate
  b <- svyby(~api00, ~stype, d, svymean, covmat = TRUE)
  add(design, "api00_e_h", "All", "", b, contrast(b, "E", "H"))
  add(design, "api00_e_m", "All", "", b, contrast(b, "E", "M"))
  b <- svyby(~api00, ~awards + stype, d, svymean, covmat = TRUE)
  for (aw in c("No", "Yes")) add(design, "api00_e_h", aw, "", b, contrast(b, paste0(aw, ".E"), paste0(aw, ".H")))
  b <- svyby(~sch_yes, ~stype, d, svymean, covmat = TRUE)
  add(design, "sch_wide_e_h", "All", "Yes", b, contrast(b, "E", "H"))
  b <- svyby(~awards, ~stype, d, svymean, covmat = TRUE)
  for (lv in c("No", "Yes")) add(design, "awards_e_m", "All", lv, b, contrast(b, paste0("E:awards", lv), paste0("M:awards", lv)))
  b <- svyby(~enroll, ~stype, d, svytotal, covmat = TRUE)
  add(design, "enroll_e_h", "All", "", b, contrast(b, "E", "H"))
  # two estimates on the same respondents
  m <- svymean(~api00 + api99, d)
  add(design, "growth", "All", "", m, contrast(m, "api00", "api99"))
  b <- svyby(~api00 + api99, ~stype, d, svymean, covmat = TRUE)
  for (s in c("E", "H", "M")) add(design, "growth", s, "", b, contrast(b, paste0(s, ":api00"), paste0(s, ":api99")))
  m <- svymean(~awards_yes + sch_yes, d)
  add(design, "awards_minus_sch_wide", "All", "", m, contrast(m, "awards_yes", "sch_yes"))
  b <- svyby(~awards_yes + sch_yes, ~stype, d, svymean, covmat = TRUE)
  for (s in c("E", "H", "M")) add(design, "awards_minus_sch_wide", s, "", b, contrast(b, paste0(s, ":awards_yes"), paste0(s, ":sch_yes")))
  m <- svytotal(~api00 + api99, d)
  add(design, "total_growth", "All", "", m, contrast(m, "api00", "api99"))
  r <- svyratio(~api00 + api.stu, ~enroll, d, covmat = TRUE)
  add(design, "ratio_gap", "All", "", r, contrast(r, "api00/enroll", "api.stu/enroll"))
  {
    # acs.k3 and acs.46 have missing values (apistrat: 103 and 66 of 200; apiclus1: 70 and 38 of 183)
    d2 <- update(d, k3 = ifelse(is.na(acs.k3), 0, acs.k3), k3_obs = as.numeric(!is.na(acs.k3)),
                 a46 = ifelse(is.na(acs.46), 0, acs.46), a46_obs = as.numeric(!is.na(acs.46)))
    r <- svyratio(~k3 + a46, ~k3_obs + a46_obs, d2, covmat = TRUE)
    stopifnot(abs(coef(r)[["k3/k3_obs"]] - coef(svymean(~acs.k3, d, na.rm = TRUE))[[1]]) < 1e-12)
    add(design, "acs_gap", "All", "", r, contrast(r, "k3/k3_obs", "a46/a46_obs"))
  }
}
out <- do.call(rbind, rows)
out[] <- lapply(out, function(col) if (is.numeric(col)) sprintf("%.17g", col) else col)
write.csv(out, file.path("tests", "reference", "differences_expected.csv"), row.names = FALSE, quote = TRUE)
cat("wrote", nrow(out), "rows\n")
