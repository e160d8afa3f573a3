"""`cto-harness view`: a run's or a suite's evidence as self-contained HTML pages, re-verified
first (the viewer never shows unverified evidence as if it were verified), and `view A B` to
compare two runs or two suites. See `site.build_site`."""
