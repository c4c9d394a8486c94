"""Special token ids: fairseq's dictionary layout, which every model, graph and decoder here shares."""

BOS, PAD, EOS, UNK = 0, 1, 2, 3
FIRST_WORD = 4  # the first id of a real word (fairseq's ``nspecial``)
