import numpy as np

from arenapref.model.batching import length_grouped_chunks, token_budget_batches


def padding_efficiency(lengths, batches):
    real = sum(lengths[b].sum() for b in batches)
    computed = sum(lengths[b].max() * len(b) for b in batches)
    return real / computed


def test_every_row_once_per_epoch_in_batches_of_similar_length():
    lengths = np.random.default_rng(0).integers(20, 500, size=403)
    chunks = length_grouped_chunks(lengths, batch_size=8, chunk_size=100, epochs=2, seed=1)
    batches = [b for chunk in chunks for b in chunk]
    per_epoch = len(batches) // 2
    for epoch in (batches[:per_epoch], batches[per_epoch:]):
        assert sorted(np.concatenate(epoch).tolist()) == list(range(403))
    assert all(len(chunk) <= 13 for chunk in chunks)  # 100 rows rounded up to whole batches of 8
    # Batches of 8 in file order (random lengths) would pad about half of what they compute.
    assert padding_efficiency(lengths, batches) > 0.9


def test_the_longest_row_comes_first_and_the_epoch_is_no_curriculum():
    lengths = np.random.default_rng(4).permutation(800)
    chunks = length_grouped_chunks(lengths, batch_size=8, chunk_size=80, epochs=2, seed=3)
    per_epoch = len(chunks) // 2
    for epoch in (chunks[:per_epoch], chunks[per_epoch:]):
        # The largest batch first: an out-of-memory error shows in the first step.
        assert lengths[epoch[0][0]].max() == 799
        # Blocks of rows drawn at random, each sorted longest first: the epoch does not run from the
        # longest rows to the shortest, and its last chunk is not the shortest rows of all.
        chunk_means = [np.mean([lengths[b].mean() for b in chunk]) for chunk in epoch]
        assert chunk_means != sorted(chunk_means, reverse=True)
        last_chunk = np.concatenate(epoch[-1])
        assert lengths[last_chunk].max() > 2 * len(last_chunk)


def test_no_rows_no_chunks():
    assert length_grouped_chunks([], batch_size=4, chunk_size=100, epochs=2, seed=0) == []


def test_rows_share_other_batches_in_another_epoch():
    lengths = np.random.default_rng(6).integers(1, 1000, size=400)
    first, second = np.split(np.array([b for c in length_grouped_chunks(lengths, 4, 40, 2, seed=1) for b in c]), 2)
    partners = [{frozenset(b.tolist()) for b in epoch} for epoch in (first, second)]
    assert len(partners[0] & partners[1]) < 10  # sorting all rows would give the same 100 batches twice


def test_same_seed_same_order_other_epoch_other_order():
    lengths = np.random.default_rng(2).integers(1, 50, size=64)
    first = length_grouped_chunks(lengths, 4, 16, 2, seed=5)
    again = length_grouped_chunks(lengths, 4, 16, 2, seed=5)
    assert all(np.array_equal(a, b) for ca, cb in zip(first, again, strict=True) for a, b in zip(ca, cb, strict=True))
    epoch_one, epoch_two = np.concatenate(sum(first[:4], [])), np.concatenate(sum(first[4:], []))
    assert not np.array_equal(epoch_one, epoch_two)


def test_token_budget_batches_fill_the_budget_longest_first():
    lengths = np.array([10, 300, 50, 300, 20, 120])
    batches = token_budget_batches(lengths, tokens_per_batch=600, max_rows=4)
    assert batches[0].tolist() == [1, 3]  # 2 x 300 tokens
    assert sorted(np.concatenate(batches).tolist()) == list(range(6))
    assert all(lengths[b].max() * len(b) <= 600 for b in batches)
