"""Built-in processors shipped in the worker image (``kubedag.worker.processors.<module>:<fn>``).

Stages of the document pipeline (``documents``) and of the templates in ``kubedag.templates``:
``corpus`` (ingest), ``rag`` (chunk, embed, store, query), ``knowledge_graph`` (entities,
relations, deduplication, conflicts, graph) and ``enrichment`` (the document template's
extract, embed, build_kg); with the helpers they share: ``extractors`` (text out of each
format), ``text_analysis`` (rule-based NLP), ``embedding`` (the hashing embedder and the model
seam) and ``vector_index`` (the flat cosine index and its file format). Only the standard
library at import time; networkx is imported by the graph stages when they run.
"""
