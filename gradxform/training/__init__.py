"""Training helpers: early stopping (Algorithm 7.1) as a pure, jit-able state machine."""

from gradxform.training._early_stopping import EarlyStopping, EarlyStoppingState, early_stopping

__all__ = ["EarlyStopping", "EarlyStoppingState", "early_stopping"]
