"""Command line: talk, reply, render, say, models, devices, config, bench, train-visemes.

Every command loads the typed config (``--config``, ``--set key=value``). A user
mistake (:class:`AvatarError`) prints one ``error:`` line and exits with its code;
Ctrl-C exits 130 without a traceback (0 for ``talk`` and ``serve``, which it ends).

Conversational turns — ``talk`` and ``serve`` (``live.py``), ``reply`` and ``say``
(``reply.py``) — all run :func:`avatar_agent.turn.run_turn`, the one turn path.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import yaml

from . import signals
from .config import Config, load_config
from .errors import QUIT_IS_DONE, AvatarError, InputError, ProviderError, quit_exit_code

log = logging.getLogger("avatar_agent")

USAGE_EXIT = 2  # argparse's own code for a usage mistake (README: 2 config or usage)
MAX_SAY_CHARS = 3000  # ~3.5 min of speech; longer texts are split by the user, not rendered for minutes


class _Parser(argparse.ArgumentParser):
    """argparse with the project's error format: one ``error:`` line (no usage block),
    the way to the help in parentheses."""

    def error(self, message: str) -> None:  # type: ignore[override]
        text = " ".join(f"{self.prog}: {message}".split())
        self.exit(USAGE_EXIT, f"error: {text} (see: {self.prog} --help)\n")


def _common() -> argparse.ArgumentParser:
    p = _Parser(add_help=False)
    p.add_argument("--config", type=Path, default=None, help="YAML config (default: the packaged configs/config.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set llm.max_tokens=64 (repeatable)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    return p


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of all commands."""
    parser = _Parser(prog="avatar-agent", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _common()

    p = sub.add_parser("talk", parents=[common], help="live conversation: mic -> avatar window + speaker")
    p.add_argument("--image", type=Path, help="avatar portrait (overrides avatar.image)")
    p.add_argument("--no-window", action="store_true", help="audio only, no OpenCV window")
    p.add_argument("--record", type=Path, help="also record the session to this mp4")

    p = sub.add_parser("reply", parents=[common], help="answer a recorded question with the avatar, write an mp4")
    p.add_argument("--input", "-i", type=Path, required=True, help="question audio (wav/flac/mp3)")
    p.add_argument("--image", type=Path, help="avatar portrait (overrides avatar.image)")
    p.add_argument("--output", "-o", type=Path, default=Path("out/reply.mp4"))
    p.add_argument("--show", action="store_true", help="also play the reply in a window")

    p = sub.add_parser("render", parents=[common], help="lip-sync only: image/video + audio -> mp4")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--image", type=Path)
    src.add_argument("--video", type=Path)
    p.add_argument("--audio", type=Path, required=True)
    p.add_argument("--output", "-o", type=Path, default=Path("out/render.mp4"))
    p.add_argument("--engine", help="lip-sync engine (overrides lipsync.engine)")

    p = sub.add_parser("say", parents=[common], help="text -> speech -> lip-synced mp4")
    p.add_argument("text")
    p.add_argument("--image", type=Path)
    p.add_argument("--output", "-o", type=Path, default=Path("out/say.mp4"))

    p = sub.add_parser("models", help="model store: list, pull, verify, convert-wav2lip")
    msub = p.add_subparsers(dest="models_cmd", required=True, metavar="ACTION")
    msub.add_parser("list", parents=[common], help="known models and their state")
    mp = msub.add_parser("pull", parents=[common], help="fetch models (default: the embedded defaults)")
    mp.add_argument("names", nargs="*")
    mp.add_argument("--force", action="store_true", help="fetch again even if present")
    mv = msub.add_parser("verify", parents=[common], help="re-hash pulled files")
    mv.add_argument("names", nargs="*")
    mc = msub.add_parser("convert-wav2lip", parents=[common], help="Wav2Lip .pth -> OpenVINO IR (extra 'convert')")
    mc.add_argument("checkpoint", type=Path)
    mc.add_argument("--output", type=Path, default=None, help="IR path (default wav2lip.xml in the model store)")
    mc.add_argument("--fp16", action="store_true", help="compress weights to FP16")
    mc.add_argument("--int8", action="store_true",
                    help="also write an INT8 model (NNCF), calibrated on the avatar and --calibration-audio")
    mc.add_argument("--calibration-audio", type=Path, default=Path("examples/assets/question.wav"),
                    help="a few seconds of speech for INT8 calibration")

    p = sub.add_parser("train-visemes", parents=[common],
                       help="train the audio -> viseme model on Piper speech (extra 'convert')")
    p.add_argument("--out", type=Path, default=None,
                   help="ONNX file to write (default: the packaged avatar_agent/lipsync/data/visemes.onnx)")
    p.add_argument("--seed", type=int, default=0, help="same seed, same file (bit for bit)")
    p.add_argument("--minutes", type=float, default=20.0, help="minutes of speech to synthesize and train on")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--espeak-share", type=float, default=0.3,
                   help="share of the minutes spoken by espeak-ng voices the evaluation does not use")
    p.add_argument("--no-eval", action="store_true", help="skip the espeak-ng evaluation")
    p.add_argument("--report", type=Path, default=None, help="also write the JSON report here")

    p = sub.add_parser("serve", parents=[common],
                       help="the avatar in a browser over WebRTC (extra 'serve')")
    p.add_argument("--host", help="address to bind (overrides server.host; default 127.0.0.1)")
    p.add_argument("--port", type=int, help="TCP port (overrides server.port; 0 = any free)")
    p.add_argument("--image", type=Path, help="avatar portrait (overrides avatar.image)")

    p = sub.add_parser("devices", parents=[common], help="list audio input/output devices")

    p = sub.add_parser("config", help="show the effective config")
    csub = p.add_subparsers(dest="config_cmd", required=True, metavar="ACTION")
    csub.add_parser("show", parents=[common], help="print the effective config (secrets masked)")

    p = sub.add_parser("bench", parents=[common], help="measure stage speeds on this machine")
    p.add_argument("what", nargs="*", default=["all"],
                   help="an area of benchmarks/ (providers, lipsync, latency, conversation, ...) or all")
    return parser


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _config(args: argparse.Namespace) -> Config:
    overrides = list(args.overrides)
    image = getattr(args, "image", None)
    if image is not None:
        overrides.append(f"avatar.image={image}")
    engine = getattr(args, "engine", None)
    if engine:
        overrides.append(f"lipsync.engine={engine}")
    return load_config(args.config, overrides)


def cmd_config(args: argparse.Namespace) -> int:
    """``config show``."""
    print(yaml.safe_dump(_config(args).masked(), sort_keys=False), end="")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """``models list|pull|verify|convert-wav2lip``."""
    from .models import DEFAULT_MODELS, ModelStore

    store = ModelStore(progress=sys.stderr.isatty())
    if args.models_cmd == "list":
        for name, spec in sorted(store.registry.items()):
            state = "pulled" if all((store.folder(name) / f.name).is_file() for f in spec.files) else "-"
            print(f"{name:20s} {spec.size / 1e6:7.1f} MB  {state:7s} {spec.description}")
        return 0
    if args.models_cmd == "pull":
        for name in args.names or DEFAULT_MODELS:
            folder = store.pull(name, force=args.force)
            print(f"{name}: ok ({folder})")
        return 0
    if args.models_cmd == "verify":
        bad = []
        for name, state in store.verify(args.names or None).items():
            print(f"{name}: {state}")
            if state in ("corrupt", "partial"):
                bad.append(name)
        if bad:
            print(f"error: corrupt or partial models: {', '.join(bad)} "
                  f"(run: avatar-agent models pull --force {' '.join(bad)})", file=sys.stderr)
        return 4 if bad else 0
    if args.models_cmd == "convert-wav2lip":
        from .lipsync.convert import convert_wav2lip

        out = convert_wav2lip(args.checkpoint, args.output, fp16=args.fp16)
        print(f"wrote {out}")
        if args.int8:
            out8 = _quantize_wav2lip(_config(args), out, args.calibration_audio)
            print(f"wrote {out8} (use it with --set lipsync.wav2lip.model={out8})")
        return 0
    return 2


def _quantize_wav2lip(cfg: Config, xml: Path, audio: Path) -> Path:
    """INT8 copy of the IR ``xml``, calibrated on the configured avatar and ``audio``."""
    from .audio.io import load_audio
    from .face.analyzer import FaceAnalyzer
    from .face.avatar import load_avatar_image
    from .lipsync.convert import calibration_inputs, quantize_int8
    from .lipsync.wav2lip import padded_box
    from .models import ModelStore

    image = load_avatar_image(cfg)
    image = image[0] if image.ndim == 4 else image
    face = FaceAnalyzer(cfg=cfg, store=ModelStore()).analyze(image)
    box = padded_box(tuple(int(v) for v in face.box), tuple(cfg.lipsync.wav2lip.pads), image.shape)
    mels, faces = calibration_inputs(image, box, load_audio(audio))
    return quantize_int8(xml, xml.with_name(xml.stem + "-int8.xml"), mels, faces)


def _check_output(output: Path, *inputs: Path | None, flag: str = "-o") -> None:
    """Refuse an output path that cannot work before anything loads: not .mp4, a folder,
    under a file, or one of the command's own input files (it would be overwritten)."""
    from .render.mp4 import check_output

    check_output(output, flag)
    target = output.expanduser().resolve()
    for path in inputs:
        if path is not None and path.expanduser().resolve() == target:
            raise InputError(f"output {output} is also the input; it would be overwritten",
                             hint=f"choose another {flag}")


def cmd_reply(args: argparse.Namespace) -> int:
    """``reply``: answer a question file with an mp4."""
    from .reply import reply_file

    cfg = _config(args)
    _check_output(args.output, args.input, cfg.avatar.image, cfg.avatar.video)
    result = reply_file(cfg, args.input, args.output, show=args.show)
    print(result.summary())
    if result.failed:  # the avatar apologised on video; the cause is the provider's line
        raise ProviderError(f"the answer failed: {result.failed}",
                            hint=f"{args.output} holds the avatar's apology")
    return 0


def cmd_say(args: argparse.Namespace) -> int:
    """``say``: speak text with the avatar into an mp4."""
    from .reply import say_text

    cfg = _config(args)
    _check_output(args.output, cfg.avatar.image, cfg.avatar.video)
    if len(args.text) > MAX_SAY_CHARS:
        raise InputError(f"the text is too long to say at once ({len(args.text)} characters, "
                         f"at most {MAX_SAY_CHARS})", hint="split it into several say commands")
    result = say_text(cfg, args.text, args.output)
    print(result.summary())
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    """``render``: lip-sync an audio file onto an image or video."""
    from .reply import render_file

    cfg = _config(args)
    if args.video is not None:
        cfg.avatar.video = args.video
    _check_output(args.output, args.audio, cfg.avatar.image, cfg.avatar.video)
    out = render_file(cfg, args.audio, args.output)
    print(f"wrote {out}")
    return 0


def cmd_talk(args: argparse.Namespace) -> int:
    """``talk``: the live conversation."""
    from .live import run_talk

    cfg = _config(args)
    if args.record is not None:
        _check_output(args.record, cfg.avatar.image, cfg.avatar.video, flag="--record")
        cfg.window.record = args.record
    return _exit_now_if_busy(run_talk(cfg, window=not args.no_window))


def _exit_now_if_busy(code: int) -> int:
    """Exit at once when a model call still runs on a worker thread (quit while loading
    or thinking): everything of ours is closed by now, and the interpreter's teardown
    would only wait for, or race with, native code that nobody needs any more."""
    # no import here: a quit signal may have cut an import short (asyncio's, say), and
    # importing again after that fails; workers not imported yet means none is running
    workers = sys.modules.get(f"{__package__}.workers")
    running = workers.busy() if workers is not None else []
    if not running:
        return code
    log.info("exiting with model calls still running", extra={"workers": running})
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def cmd_serve(args: argparse.Namespace) -> int:
    """``serve``: the page and WebRTC sessions."""
    from .errors import MissingExtraError

    cfg = _config(args)
    if args.host is not None:
        cfg.server.host = args.host
    if args.port is not None:
        if not 0 <= args.port <= 65535:
            raise InputError(f"--port {args.port} is not a TCP port", hint="use 0..65535")
        cfg.server.port = args.port
    try:
        from .web.server import run_serve
    except ImportError as exc:
        missing = (exc.name or "aiortc").split(".")[0]
        if missing == "avatar_agent":
            raise
        raise MissingExtraError("serve (the browser front end)", "serve", missing) from None
    return _exit_now_if_busy(run_serve(cfg))


def cmd_train_visemes(args: argparse.Namespace) -> int:
    """``train-visemes``: data from Piper, train, export ONNX, evaluate on espeak-ng."""
    from .lipsync.audio_visemes import MODEL_PATH
    from .train.visemes import train

    result = train(args.out or MODEL_PATH, seed=args.seed, minutes=args.minutes, epochs=args.epochs,
                   espeak_share=args.espeak_share, evaluate_voices=not args.no_eval, report=args.report)
    summary = {k: v for k, v in result.items() if k != "curve"}
    summary["final"] = result["curve"][-1]
    print(json.dumps(summary, indent=1))
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    """``devices``: list audio devices."""
    from .audio.devices import describe_devices

    print(describe_devices())
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """``bench``: run the benchmarks and print a JSON summary."""
    from .bench import run_bench

    cfg = _config(args)
    print(json.dumps(run_bench(cfg, args.what), indent=2))
    return 0


COMMANDS = {
    "talk": cmd_talk, "reply": cmd_reply, "render": cmd_render, "say": cmd_say,
    "models": cmd_models, "devices": cmd_devices, "serve": cmd_serve, "config": cmd_config, "bench": cmd_bench,
    "train-visemes": cmd_train_visemes,
}


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (the quit signals are set up by
    :func:`avatar_agent.entry.run`, the process's entry point)."""
    args = build_parser().parse_args(argv)
    signals.for_command(quit_exits=args.command in QUIT_IS_DONE)
    _setup_logging(args.verbose)
    try:
        return COMMANDS[args.command](args)
    except AvatarError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # quitting is how talk and serve end: 0; the rest 130
        code = quit_exit_code(args.command)
        if code:
            print("interrupted", file=sys.stderr)
        return _exit_now_if_busy(code)
    except FileNotFoundError as exc:  # a path the user gave that vanished mid-run
        print(f"error: {InputError(f'file not found: {exc.filename}')}", file=sys.stderr)
        return InputError.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
