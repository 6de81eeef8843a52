"""Coqui TTS through a small RANDOMLY INITIALISED VITS checkpoint.

Real Coqui voices cannot be fetched here, so the test builds a small VITS with random
weights, saves it the way Coqui's trainer does (``{"model": state_dict}`` + the
model's ``config.json``) and loads it through the provider, i.e. through
``TTS.api.TTS(model_path=..., config_path=...)`` like a user's checkpoint. The audio is
noise-like; the test checks the whole path runs and yields well-formed chunks.
Skipped, with the import error as the reason, where coqui-tts cannot be imported.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from avatar_agent import registry
from avatar_agent.config import Config
from avatar_agent.errors import ConfigError, MissingExtraError, ModelError


def _coqui_import_error() -> str | None:
    try:
        import TTS.api  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means "not usable here"
        first = " ".join(str(exc).split())[:160]
        return f"coqui-tts not importable here ({type(exc).__name__}: {first})"
    return None


needs_coqui = pytest.mark.skipif(_coqui_import_error() is not None,
                                 reason=_coqui_import_error() or "")


@pytest.fixture(scope="module")
def random_vits(tmp_path_factory):
    import torch
    from TTS.tts.configs.vits_config import VitsConfig
    from TTS.tts.models.vits import Vits, VitsArgs

    torch.manual_seed(0)
    # VITS as Coqui builds it, narrowed so it runs in well under a second; no
    # discriminator (training only); characters, not phonemes
    args = VitsArgs(hidden_channels=32, hidden_channels_ffn_text_encoder=64,
                    num_heads_text_encoder=2, num_layers_text_encoder=1, num_layers_flow=1,
                    num_layers_posterior_encoder=1, upsample_initial_channel_decoder=32,
                    init_discriminator=False)
    config = VitsConfig(model_args=args, use_phonemes=False, text_cleaner="english_cleaners")
    config.audio.sample_rate = 22050
    model = Vits(config)
    folder = tmp_path_factory.mktemp("coqui")
    torch.save({"model": model.state_dict()}, folder / "best_model.pth")
    config.save_json(str(folder / "config.json"))
    return folder / "best_model.pth"


def coqui_cfg(model_path, **extra) -> Config:
    return Config.model_validate({"tts": {"provider": "coqui", "coqui": {
        "model_path": str(model_path), **extra}}})


@needs_coqui
async def test_coqui_random_init_vits_checkpoint_speaks_per_sentence(random_vits):
    tts = registry.create("tts", "coqui", cfg=coqui_cfg(random_vits), store=None)
    tts.load()
    chunks = [c async for c in tts.synthesize("Hello there. This is a second sentence.")]
    assert len(chunks) == 2  # one chunk per sentence, in order
    assert [c.text for c in chunks] == ["Hello there.", "This is a second sentence."]
    for chunk in chunks:
        assert chunk.sample_rate == 22050 and chunk.pcm.dtype == np.float32
        assert chunk.pcm.ndim == 1 and len(chunk.pcm) > 0 and np.isfinite(chunk.pcm).all()
    await tts.aclose()


@needs_coqui
async def test_coqui_random_init_stops_after_the_consumer_leaves(random_vits, monkeypatch):
    tts = registry.create("tts", "coqui", cfg=coqui_cfg(random_vits), store=None)
    tts.load()
    # record every sentence the real model is asked to speak (a pass-through spy)
    spoken: list[str] = []
    real = tts._api.tts

    def spy(*args, **kwargs):
        spoken.append(kwargs.get("text", args[0] if args else ""))
        return real(*args, **kwargs)

    monkeypatch.setattr(tts._api, "tts", spy)
    async for _ in tts.synthesize(" ".join(f"Sentence {n}." for n in range(20))):
        break  # the consumer leaves after the first sentence
    # the next call queues behind the first on the one worker thread: when it is done,
    # the first has ended (counted, not timed)
    assert [c.text.strip() for c in [c async for c in tts.synthesize("Still here.")]] == ["Still here."]
    assert spoken[0].strip() == "Sentence 0." and spoken[-1].strip() == "Still here."
    # the stop lands while a sentence or two are in flight; the other 17+ never start
    assert len(spoken) - 1 <= 3, spoken
    await tts.aclose()


@needs_coqui
def test_coqui_missing_files_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="tts.coqui.model_path is not set"):
        registry.create("tts", "coqui", cfg=Config.model_validate({"tts": {"provider": "coqui"}}),
                        store=None)
    with pytest.raises(ModelError, match="model_path: file not found"):
        registry.create("tts", "coqui", cfg=coqui_cfg(tmp_path / "x.pth"), store=None)
    (tmp_path / "y.pth").write_bytes(b"x")
    with pytest.raises(ModelError, match="config_path: file not found"):
        registry.create("tts", "coqui", cfg=coqui_cfg(tmp_path / "y.pth"), store=None)


def test_coqui_without_the_extra_is_one_line_missing_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "TTS", None)  # what an install without the extra sees
    monkeypatch.setitem(sys.modules, "TTS.api", None)
    with pytest.raises(MissingExtraError) as err:
        registry.create("tts", "coqui", cfg=coqui_cfg(tmp_path / "m.pth"), store=None)
    assert "'coqui'" in str(err.value) and "pip install 'avatar-agent[coqui]'" in str(err.value)
    assert "\n" not in str(err.value)
