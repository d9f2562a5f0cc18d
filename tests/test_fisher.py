import numpy as np
import pytest

from taskrel.data import encode
from taskrel.fisher import COMPONENTS, fisher_embedding

from helpers import SENTENCES, tiny_model

ALL = COMPONENTS


def embed(model, tok, spec, sentences=SENTENCES, max_length=64, **kw):
    enc = encode(sentences, tok, model.tasks, max_length)
    return fisher_embedding(model, enc, spec, tok.pad_token_id, "cpu", **{"components": ALL, **kw})


def close(a, b, rtol=1e-4):
    assert set(a) == set(b)
    for c in a:
        np.testing.assert_allclose(a[c], b[c], rtol=rtol, atol=1e-7 * float(np.abs(b[c]).max()))


@pytest.mark.parametrize("spec", ["ner", "mtcls", "bcls", "mcls"])
def test_vectorised_equals_the_per_example_loop(spec):
    model, tok = tiny_model()
    close(embed(model, tok, spec, method="vmap", batch_size=3), embed(model, tok, spec, method="loop", batch_size=1))


@pytest.mark.parametrize("label_mode", ["empirical", "true"])
def test_invariant_to_the_batch_size(label_mode):
    model, tok = tiny_model()
    one = embed(model, tok, "ner", batch_size=1, label_mode=label_mode)
    three = embed(model, tok, "ner", batch_size=3, label_mode=label_mode)
    two = embed(model, tok, "ner", batch_size=2, label_mode=label_mode, method="loop")
    close(one, three)
    close(one, two)


def test_shapes_and_what_the_head_component_is():
    model, tok = tiny_model()
    emb = embed(model, tok, "mcls")
    layers, hidden = model.encoder.config.num_hidden_layers, model.encoder.config.hidden_size
    assert emb["layer_outputs"].shape == (layers, hidden) and emb["head"].shape == (hidden,)
    n_encoder = sum(p.numel() for n, p in model.encoder.named_parameters() if not n.startswith("embeddings."))
    assert emb["encoder"].shape == (n_encoder,)
    assert all((v >= 0).all() and v.sum() > 0 for v in emb.values())


def test_deterministic_with_a_seed_and_true_fisher_depends_on_it():
    model, tok = tiny_model()
    a = embed(model, tok, "ner", label_mode="true", seed=3)
    b = embed(model, tok, "ner", label_mode="true", seed=3)
    c = embed(model, tok, "ner", label_mode="true", seed=4)
    gold = embed(model, tok, "ner")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.allclose(a["head"], c["head"]) and not np.allclose(a["head"], gold["head"])


def test_eval_mode_is_enforced_and_the_mode_restored():
    model, tok = tiny_model(dropout=0.5)
    model.eval()
    reference = embed(model, tok, "bcls")
    model.train()  # dropout on: an embedding computed in this mode would be random
    got = embed(model, tok, "bcls")
    assert model.training
    close(got, reference, rtol=1e-6)


def test_long_sentences_split_into_windows_take_the_loop():
    model, tok = tiny_model()
    assert any(len(e.rows) > 1 for e in encode(SENTENCES, tok, model.tasks, 12))
    short = embed(model, tok, "ner", max_length=12, method="vmap", batch_size=3)  # some sentences need 2 windows
    loop = embed(model, tok, "ner", max_length=12, method="loop", batch_size=1)
    close(short, loop)


def test_crf_heads_are_refused():
    model, tok = tiny_model(crf=True)
    with pytest.raises(ValueError, match="CRF"):
        embed(model, tok, "ner")
