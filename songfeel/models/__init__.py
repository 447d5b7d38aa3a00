"""Song embedders: a log-mel front end, a CNN over ~1 s windows and a sequence head."""

from songfeel.models.embedder import AudioEmbedder, SongEmbedder, build_embedder, load_checkpoint

__all__ = ["AudioEmbedder", "SongEmbedder", "build_embedder", "load_checkpoint"]
