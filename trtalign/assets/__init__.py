"""Package data: bundled proxy models (trained on generated data) and their model cards. Data only, no code."""
