"""Building blocks shared by methods: heads, collectives, masking, tokenizers."""
