#!/usr/bin/env bash
# avdevices.sh start|stop|status|env
#
# Virtual audio/video devices for testing a desktop A/V program on a headless
# box (no sound card, no screen). It starts, as the current user (root is fine):
#   * a private PulseAudio daemon with
#       - null sink  "agent_speaker"  = default sink: what the program plays
#                                       (record it: parec -d agent_speaker.monitor)
#       - null sink  "user_mouth"     = where the test "speaks":
#                                       paplay --device=user_mouth speech.wav
#       - source     "virtual_mic"    = default source, a remap of user_mouth.monitor,
#                                       so the program's microphone hears user_mouth
#       - a silent source looped into both sinks, so the mic streams silence like a
#         real one (an idle null sink delivers no samples at all)
#   * Xvfb on a free display (chosen by Xvfb itself via -displayfd).
# All state (sockets, logs, PID file) lives in $AVDEV_DIR (default /tmp/avdevices-$UID);
# nothing is written outside it (except Xvfb's own /tmp/.X11-unix/X<n> socket and lock),
# in particular not ~/.config/pulse. `stop` kills only the PIDs it recorded.
#
# Usage:   eval "$(./avdevices.sh start)"   # starts (or reuses) devices, exports env
#          ./avdevices.sh status                # devices, connected streams, display
#          ./avdevices.sh env                   # print the exports again (also in $AVDEV_DIR/env)
#          ./avdevices.sh stop
# Env knobs: AVDEV_DIR, AVDEV_RATE (48000), AVDEV_SCREEN (1280x720x24).
#
# Debian 12 packages needed (scripts/install-sysdeps.sh test installs them): pulseaudio pulseaudio-utils
#   libasound2-plugins libportaudio2 xvfb x11-utils xdotool imagemagick, and for
#   opencv-python libgl1 libglib2.0-0 libsm6 libice6 libxext6 libxcursor1; espeak-ng sox
#   for test sounds. PortAudio reaches PulseAudio through ALSA's "pulse" plugin; Debian's
#   /usr/share/alsa/alsa.conf.d/pulse.conf makes ALSA "default" = pulse whenever the
#   server in $PULSE_SERVER answers, so no ~/.asoundrc is needed.
set -euo pipefail

DIR=${AVDEV_DIR:-/tmp/avdevices-$(id -u)}
RATE=${AVDEV_RATE:-48000}             # sample rate of the virtual devices
SCREEN=${AVDEV_SCREEN:-1280x720x24}   # Xvfb screen geometry
PIDS=$DIR/pids                         # lines: "<comm> <pid>"
log() { echo "avdevices: $*" >&2; }

# Is PID alive AND still the program we started (guards against PID reuse)? A zombie
# counts as dead: the daemons are re-parented to PID 1, which may reap them only seconds later.
alive() { [ "$(cat "/proc/$2/comm" 2>/dev/null)" = "$1" ] && ! grep -q '^State:.*Z' "/proc/$2/status" 2>/dev/null; }
running() { # true if every recorded process is alive
  [ -s "$PIDS" ] || return 1
  while read -r comm pid; do alive "$comm" "$pid" || return 1; done < "$PIDS"
}

# The environment a client (the program under test, paplay, pactl...) needs.
print_env() {
  cat <<EOF
export PULSE_SERVER=unix:$DIR/pulse/native
export PULSE_COOKIE=$DIR/cookie
export DISPLAY=:$(cat "$DIR/display")
export QT_QPA_PLATFORM=xcb
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$DIR/xdg}
export AVDEV_DIR=$DIR
EOF
}

# True once the virtual mic delivers samples (what a recording program needs).
mic_streams() { [ "$(timeout 0.5 parec -d virtual_mic --raw --format=s16le --rate=8000 \
  --channels=1 --latency-msec=10 2>/dev/null | head -c 64 | wc -c)" -ge 64 ]; }

# Wait up to $1 tenths of a second for command "${@:2}" to succeed.
wait_for() { local n=$1; shift; until "$@" >/dev/null 2>&1; do
  n=$((n-1)); [ $n -gt 0 ] || return 1; sleep 0.1; done; }

start() {
  if running; then log "already running"; print_env; return; fi
  for c in pulseaudio pactl Xvfb; do
    command -v $c >/dev/null || { log "$c not found: run scripts/install-sysdeps.sh test"; return 1; }
  done
  [ -e "$DIR" ] && stop >/dev/null 2>&1       # half-started leftovers: clean first
  mkdir -p "$DIR"/{pulse,home,config,state,xdg}; chmod 700 "$DIR" "$DIR"/*
  touch "$DIR/.avdevices" "$PIDS"              # marker: `stop` may rm -rf this dir

  # --- PulseAudio: our own script (-n: skip /etc/pulse/default.pa, so no ALSA
  # card probing, no udev, no dbus, no suspend-on-idle, no stream/device restore).
  cat > "$DIR/avdevices.pa" <<EOF
load-module module-native-protocol-unix socket=$DIR/pulse/native auth-anonymous=1
load-module module-null-sink sink_name=agent_speaker rate=$RATE sink_properties=device.description=agent_speaker
load-module module-null-sink sink_name=user_mouth rate=$RATE sink_properties=device.description=user_mouth
load-module module-remap-source master=user_mouth.monitor source_name=virtual_mic source_properties=device.description=virtual_mic
# Keep-alive: a null sink with nothing playing is IDLE and renders NOTHING, so its
# monitor (= our mic) delivers no samples at all and a recording program's callback
# never fires (a real mic streams silence). Loop a silent source into both sinks
# so they always run in real time: the mic streams silence, and parec recordings
# of agent_speaker.monitor keep the true gaps between sounds. (latency_msec=200 only
# sets how often the silence is pushed: ~0.5% CPU idle; 30 ms cost ~2.3%.)
load-module module-null-source source_name=silence rate=$RATE
load-module module-loopback source=silence sink=user_mouth latency_msec=200 source_dont_move=true sink_dont_move=true
load-module module-loopback source=silence sink=agent_speaker latency_msec=200 source_dont_move=true sink_dont_move=true
# A null sink that starts RUNNING before it knows its inputs' latency renders 2 s ahead
# and then stays silent ~1.9 s (mic dead right after start). Suspend+resume restarts
# its clock with the loopback's latency: the mic streams within ~0.1 s of start.
suspend-sink user_mouth 1
suspend-sink user_mouth 0
suspend-sink agent_speaker 1
suspend-sink agent_speaker 0
set-default-sink agent_speaker
set-default-source virtual_mic
EOF
  echo "default-sample-rate = $RATE" > "$DIR/daemon.conf"
  # HOME/XDG_*/PULSE_* point into $DIR so the daemon never touches ~/.config/pulse.
  # No DISPLAY and a dead D-Bus address: otherwise libdbus may autolaunch a stray
  # dbus-daemon we would not track. As root PulseAudio only warns ("not intended to
  # be run as root"); --system is NOT needed. setsid detaches it from the caller's
  # terminal/process group (Ctrl-C or a CI step ending won't kill it).
  env -u DISPLAY HOME="$DIR/home" XDG_CONFIG_HOME="$DIR/config" XDG_RUNTIME_DIR="$DIR/xdg" \
      PULSE_RUNTIME_PATH="$DIR/pulse" PULSE_STATE_PATH="$DIR/state" PULSE_CONFIG="$DIR/daemon.conf" \
      DBUS_SESSION_BUS_ADDRESS="unix:path=$DIR/no-dbus" \
    setsid pulseaudio -n -F "$DIR/avdevices.pa" --daemonize=no --exit-idle-time=-1 \
      --disallow-exit --realtime=no --high-priority=no --use-pid-file=no \
      --log-target=stderr </dev/null >"$DIR/pulseaudio.log" 2>&1 &
  echo "pulseaudio $!" >> "$PIDS"

  # --- Xvfb: -displayfd makes Xvfb pick a free display and write its number
  # to fd 3 once it accepts connections (no race, no lock-file guessing).
  setsid Xvfb -displayfd 3 -screen 0 "$SCREEN" -nolisten tcp -noreset \
    3>"$DIR/display" </dev/null >"$DIR/xvfb.log" 2>&1 &
  echo "Xvfb $!" >> "$PIDS"

  wait_for 100 grep -q . "$DIR/display" || { log "Xvfb failed:"; tail -5 "$DIR/xvfb.log" >&2; stop; return 1; }
  PULSE_SERVER=unix:$DIR/pulse/native PULSE_COOKIE=$DIR/cookie wait_for 100 pactl info \
    || { log "pulseaudio failed:"; tail -5 "$DIR/pulseaudio.log" >&2; stop; return 1; }
  PULSE_SERVER=unix:$DIR/pulse/native PULSE_COOKIE=$DIR/cookie wait_for 50 mic_streams \
    || { log "virtual_mic delivers no samples"; stop; return 1; }
  print_env > "$DIR/env"
  log "started (pids: $(tr '\n' ' ' < "$PIDS")); env also in $DIR/env"
  print_env
}

stop() {
  [ -s "$PIDS" ] && while read -r comm pid; do
    alive "$comm" "$pid" || continue
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 30); do alive "$comm" "$pid" || break; sleep 0.1; done
    alive "$comm" "$pid" && { log "killing $comm $pid"; kill -KILL "$pid" 2>/dev/null || true; }
  done < "$PIDS"
  [ -e "$DIR/.avdevices" ] && rm -rf -- "$DIR"
  log "stopped"
}

status() {
  if ! running; then echo "avdevices: not running"; return 1; fi
  echo "avdevices: running in $DIR: $(tr '\n' ' ' < "$PIDS")"
  eval "$(print_env)"
  pactl info | grep -E '^(Server Name|Default Sink|Default Source|Default Sample)'
  pactl list short sinks; pactl list short sources
  echo "streams (sink-inputs, then source-outputs):"
  pactl list short sink-inputs; pactl list short source-outputs
  xdpyinfo 2>/dev/null | grep -E '^name of display|dimensions' || echo "Xvfb not answering on $DISPLAY"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) if running; then print_env; else log "not running"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
