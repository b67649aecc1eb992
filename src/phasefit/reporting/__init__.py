"""What a run shows a person: the model card, the pictures and the self-contained HTML report."""
