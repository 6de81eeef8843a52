"""Make the example assets from public-domain media shipped inside packages.

- ``face.png``: NASA's astronaut portrait (public domain) from scikit-image, or
  Grace Hopper's portrait (public domain) from matplotlib's sample data.
- ``question.wav``: a question spoken by the bundled Piper voice.

Nothing here is committed; run ``python examples/make_assets.py`` (``make demo`` does).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent / "assets"
QUESTION = "Hello! What is the capital of France?"


def portrait(which: str = "astronaut") -> np.ndarray:
    """A public-domain portrait as (H, W, 3) uint8 BGR."""
    if which == "astronaut":
        from skimage import data

        return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as fh:
        buf = np.frombuffer(fh.read(), np.uint8)
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def speak(text: str, path: Path, length_scale: float = 1.0) -> Path:
    """Speak ``text`` with the bundled Piper voice into a 16-bit wav at 22050 Hz."""
    import wave

    from piper import PiperVoice, SynthesisConfig

    from avatar_agent.models import ModelStore

    voice = PiperVoice.load(str(ModelStore(progress=False).path("piper-joe-medium")))
    syn = SynthesisConfig(length_scale=length_scale)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wav:
        voice.synthesize_wav(text, wav, syn_config=syn)
    return path


def main() -> None:
    """Write face.png, hopper.png and question.wav into examples/assets/."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--question", default=QUESTION)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out / "face.png"), portrait("astronaut"))
    cv2.imwrite(str(args.out / "hopper.png"), portrait("hopper"))
    speak(args.question, args.out / "question.wav")
    print(f"wrote {args.out}/face.png, hopper.png, question.wav")


if __name__ == "__main__":
    main()
