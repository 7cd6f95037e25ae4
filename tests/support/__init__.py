"""Harnesses shared by the test tree (scraping /metrics, ...); no tests here."""
