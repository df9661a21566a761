"""Reading results: tables, comparisons, the quality gate, plots and the HTML report."""
