## Reference values for tables.crosstabs[].by (one panel per domain), from R survey 4.1-1.
##   Rscript tests/reference/crosstab_panels.R   (from the repository root; ../shared beside it)
## writes tests/reference/crosstab_panels_expected.csv (cells) and
## tests/reference/crosstab_panels_tests_expected.csv (svychisq), read by tests/stages/test_crosstabs.py.
##
## Design: clus1 = svydesign(id = ~dnum, weights = ~pw, fpc = ~fpc, data = apiclus1). A panel is
## subset(clus1, stype == s) (R's domain: zero weights outside, degf of the subset); its cells are
## the column percentages of awards within sch.wide: svyby(~awards, ~sch.wide, panel, svymean) and
## svyby(~I(awards == level), ~sch.wide, panel, svyciprop, method = "logit") (the interval on the
## domain's degf), its Total svymean / svyciprop on the panel, its test svychisq(~awards + sch.wide, panel).
suppressPackageStartupMessages(library(survey))
stopifnot(packageVersion("survey") == "4.1.1")
api <- read.csv("../shared/conformance/data/apiclus1.csv", stringsAsFactors = FALSE)
api$awards <- factor(api$awards)
api$sch.wide <- factor(api$sch.wide)
clus1 <- svydesign(id = ~dnum, weights = ~pw, fpc = ~fpc, data = api)
num <- function(x) sprintf("%.17g", unname(x))
cells <- list()
tests <- list()
for (s in c("E", "H", "M")) {
  panel <- subset(clus1, stype == s)
  m <- svymean(~awards, panel)
  for (lv in levels(api$awards)) {
    ci <- confint(svyciprop(as.formula(sprintf("~I(awards == \"%s\")", lv)), panel, method = "logit"))
    cells[[length(cells) + 1]] <- data.frame(panel = s, domain = "All", level = lv, estimate = num(coef(m)[paste0("awards", lv)]),
      se = num(SE(m)[paste0("awards", lv)]), ci_low = num(ci[1]), ci_high = num(ci[2]), df = degf(panel))
  }
  for (w in levels(api$sch.wide)) {
    dom <- subset(panel, sch.wide == w)
    if (sum(weights(dom) > 0) == 0) next
    b <- svymean(~awards, dom)
    for (lv in levels(api$awards)) {
      ci <- confint(svyciprop(as.formula(sprintf("~I(awards == \"%s\")", lv)), dom, method = "logit"))
      cells[[length(cells) + 1]] <- data.frame(panel = s, domain = w, level = lv, estimate = num(coef(b)[paste0("awards", lv)]),
        se = num(SE(b)[paste0("awards", lv)]), ci_low = num(ci[1]), ci_high = num(ci[2]), df = degf(dom))
    }
  }
  t <- svychisq(~awards + sch.wide, panel)
  tests[[length(tests) + 1]] <- data.frame(panel = s, statistic = num(t$statistic), ndf = num(t$parameter[["ndf"]]),
    ddf = num(t$parameter[["ddf"]]), p_value = num(t$p.value))
}
write.csv(do.call(rbind, cells), "tests/reference/crosstab_panels_expected.csv", row.names = FALSE)
write.csv(do.call(rbind, tests), "tests/reference/crosstab_panels_tests_expected.csv", row.names = FALSE)
cat("wrote", length(cells), "cells and", length(tests), "tests\n")
