"""Mask R-CNN vs Mask R-CNN++ on DSB2018 nuclei: profiles, runs, reports, inference cost."""
