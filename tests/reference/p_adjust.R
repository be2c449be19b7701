# Reference values for tables.significance.adjust (issue 13, item 5): R's p.adjust on two
# families of p-values, every method.  Rscript tests/reference/p_adjust.R  (from the project root)
# writes tests/reference/p_adjust_expected.csv, read by tests/exporters/test_significance.py.
p <- list(
  a = c(0.01, 0.04, 0.03, 0.20, 0.002, 0.049),
  b = c(0.5, 0.012, 0.3, 0.0001, 0.07, 0.07, 0.9, 0.041)
)
rows <- list()
for (family in names(p)) {
  for (method in c("holm", "hochberg", "hommel", "bonferroni", "BH", "BY")) {
    adj <- p.adjust(p[[family]], method = method)
    rows[[length(rows) + 1]] <- data.frame(family = family, method = method, position = seq_along(adj),
                                           p_value = sprintf("%.17g", p[[family]]), p_adjusted = sprintf("%.17g", adj))
  }
}
write.csv(do.call(rbind, rows), file.path("tests", "reference", "p_adjust_expected.csv"), row.names = FALSE)
