"""Pure decision functions: no I/O, no clocks, no databases; the shells call them."""
