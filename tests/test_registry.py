import pytest

import zoo
from zoo.methods.simclr import SimCLR
from zoo.registry import get_method, register_method


def test_create_model_by_name(tiny_encoder):
    model = zoo.create_model("simclr", encoder=tiny_encoder, temperature=0.2)
    assert isinstance(model, SimCLR) and model.hparams.temperature == 0.2
    assert SimCLR.method_name == "simclr" and get_method("simclr") is SimCLR


def test_unknown_name_lists_known_methods():
    with pytest.raises(KeyError, match="unknown method 'nope'.*simclr"):
        zoo.create_model("nope")


def test_a_name_cannot_be_taken_twice():
    with pytest.raises(ValueError, match="already registered"):
        register_method("simclr")(type("Other", (), {}))
