"""poster-genres: the inference service (HTTP only; the model contract is `poster_genres`)."""
