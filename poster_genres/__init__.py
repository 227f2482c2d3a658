"""The contract shared by training and serving: preprocessing, the model artifact, the classifier and
the decision rule. Knows nothing of HTTP or of the training loop; `app/` and `training/` import it,
never each other."""
