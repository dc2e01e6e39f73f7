"""Research: parameter sweeps, walk-forward and overfitting statistics."""
