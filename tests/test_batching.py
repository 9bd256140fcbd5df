import numpy as np

from arenapref.batching import length_bucketed_chunks, token_budget_batches


def padding_efficiency(lengths, batches):
    real = sum(lengths[b].sum() for b in batches)
    computed = sum(lengths[b].max() * len(b) for b in batches)
    return real / computed


def test_every_row_once_per_epoch_in_batches_of_similar_length():
    lengths = np.random.default_rng(0).integers(20, 500, size=403)
    chunks = length_bucketed_chunks(lengths, batch_size=8, chunk_size=100, epochs=2, seed=1)
    batches = [b for chunk in chunks for b in chunk]
    per_epoch = len(batches) // 2
    for epoch in (batches[:per_epoch], batches[per_epoch:]):
        assert sorted(np.concatenate(epoch).tolist()) == list(range(403))
    assert all(len(chunk) <= 13 for chunk in chunks)  # 100 rows rounded up to whole batches of 8
    assert padding_efficiency(lengths, batches) > 0.95


def test_batch_order_is_random_not_shortest_first():
    lengths = np.arange(400)
    chunks = length_bucketed_chunks(lengths, batch_size=8, chunk_size=80, epochs=1, seed=3)
    chunk_means = [np.mean([lengths[b].mean() for b in chunk]) for chunk in chunks]
    assert chunk_means != sorted(chunk_means)
    # Each chunk mixes short and long rows, so the last updates are not the longest rows only.
    assert all(np.ptp([lengths[b].mean() for b in chunk]) > 100 for chunk in chunks[:-1])


def test_same_seed_same_order_other_epoch_other_order():
    lengths = np.random.default_rng(2).integers(1, 50, size=64)
    first = length_bucketed_chunks(lengths, 4, 16, 2, seed=5)
    again = length_bucketed_chunks(lengths, 4, 16, 2, seed=5)
    assert all(np.array_equal(a, b) for ca, cb in zip(first, again, strict=True) for a, b in zip(ca, cb, strict=True))
    epoch_one, epoch_two = np.concatenate(sum(first[:4], [])), np.concatenate(sum(first[4:], []))
    assert not np.array_equal(epoch_one, epoch_two)


def test_token_budget_batches_fill_the_budget_longest_first():
    lengths = np.array([10, 300, 50, 300, 20, 120])
    batches = token_budget_batches(lengths, tokens_per_batch=600, max_rows=4)
    assert batches[0].tolist() == [1, 3]  # 2 x 300 tokens
    assert sorted(np.concatenate(batches).tolist()) == list(range(6))
    assert all(lengths[b].max() * len(b) <= 600 for b in batches)
