"""One module per tab, each exposing ``build_<tab>_tab(ctx)``."""
