"""Predict human preference between two chatbot answers (LMSYS Chatbot Arena)."""

__version__ = "0.1.0"

LABEL_COLUMNS = ("winner_model_a", "winner_model_b", "winner_tie")
