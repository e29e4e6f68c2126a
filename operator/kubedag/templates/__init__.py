"""Ready-made pipelines (document processing, RAG, knowledge graph) built with the SDK."""
