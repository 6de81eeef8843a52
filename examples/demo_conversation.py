"""One conversational turn from a file: a spoken question in, the avatar's answer as an mp4.

    python examples/demo_conversation.py --image face.jpg --input-audio q.wav --output reply.mp4

Offline by default (faster-whisper, llama.cpp, Piper, viseme lip-sync). ``--use-openai``
switches speech-to-text, the LLM and text-to-speech to the OpenAI API (needs
OPENAI_API_KEY; ``--set`` any other key, e.g. ``--set llm.openai.base_url=http://...``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from avatar_agent.config import load_config
from avatar_agent.errors import AvatarError
from avatar_agent.reply import reply_file

OPENAI_OVERRIDES = ("stt.provider=openai", "llm.provider=openai", "tts.provider=openai")


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run one turn, print transcript, reply and timings."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", type=Path, default=Path("examples/assets/face.png"))
    ap.add_argument("--input-audio", type=Path, default=Path("examples/assets/question.wav"))
    ap.add_argument("--output", type=Path, default=Path("out/reply.mp4"))
    ap.add_argument("--use-openai", action="store_true", help="STT, LLM and TTS from the OpenAI API")
    ap.add_argument("--config", type=Path, default=None)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--show", action="store_true", help="play the answer in a window")
    args = ap.parse_args(argv)
    overrides = [f"avatar.image={args.image}", *(OPENAI_OVERRIDES if args.use_openai else ()),
                 *args.overrides]
    try:
        cfg = load_config(args.config, overrides)
        result = reply_file(cfg, args.input_audio, args.output, show=args.show)
    except AvatarError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(result.summary())
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
