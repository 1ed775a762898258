#!/usr/bin/env bash
# Regenerates the default prompts and music on hold (8 kHz mono μ-law WAV, small on disk).
# Needs espeak-ng and sox (Debian: apt-get install espeak-ng sox).
# Usage: channels/media/prompts/generate.sh   (writes next to this script)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
command -v espeak-ng >/dev/null || { echo "install espeak-ng (apt-get install espeak-ng)" >&2; exit 1; }
command -v sox >/dev/null || { echo "install sox (apt-get install sox)" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# say LANG_DIR VOICE NAME TEXT
say() {
  local dir="$here/$1" voice="$2" name="$3" text="$4"
  mkdir -p "$dir"
  espeak-ng -v "$voice" -s 150 -a 160 -w "$tmp/raw.wav" -- "$text"
  # Trim leading/trailing silence, band-limit for the phone, 8 kHz μ-law mono.
  sox "$tmp/raw.wav" -r 8000 -c 1 -e u-law "$dir/$name.wav" \
    silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse \
    gain -6 highpass 200 lowpass 3400 norm -3 pad 0 0.05
}

# ---- English -------------------------------------------------------------------------
en() { say en en-us "$1" "$2"; }
en welcome "Welcome to customer service."
en press1 "For sales, press 1. For support, press 2."
en please_hold "Please hold."
en you_are_number "You are number"
en in_line "in line."
en expected_wait "Your expected wait is about"
en minutes "minutes."
en press_star_callback "Press star for a callback."
en callback_confirm "We will call you back."
en leave_message "Please leave a message after the tone."
en closed "We are closed now. Please call again during business hours."
en goodbye "Thank you for calling. Goodbye."
en balance_is "Your balance is"
en yuan "yuan"
en jiao "jiao"
en fen "fen"
en point "point"
n=(zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen
   fifteen sixteen seventeen eighteen nineteen)
for i in "${!n[@]}"; do en "$i" "${n[$i]}"; done
for t in 20:twenty 30:thirty 40:forty 50:fifty 60:sixty 70:seventy 80:eighty 90:ninety; do
  en "${t%%:*}" "${t#*:}"
done
en hundred "hundred"
en thousand "thousand"
en million "million"
en billion "billion"

# ---- Chinese: Mandarin voice; zh-TW uses Traditional wording where it differs -----------
zh_digits=(零 一 二 三 四 五 六 七 八 九)
zh() {  # zh LANG NAME TEXT
  say "$1" cmn "$2" "$3"
}
for lang in zh-CN zh-TW; do
  for i in "${!zh_digits[@]}"; do zh "$lang" "$i" "${zh_digits[$i]}"; done
  zh "$lang" 10 "十"
  zh "$lang" hundred "百"
  zh "$lang" thousand "千"
  if [ "$lang" = zh-TW ]; then zh "$lang" ten_thousand "萬"; zh "$lang" hundred_million "億"
  else zh "$lang" ten_thousand "万"; zh "$lang" hundred_million "亿"; fi
  zh "$lang" you_are_number "您排在第"
  zh "$lang" in_line "位"
  zh "$lang" yuan "元"
  zh "$lang" jiao "角"
  zh "$lang" fen "分"
done
zh zh-CN welcome "欢迎致电客户服务中心。"
zh zh-CN press1 "销售请按1，技术支持请按2。"
zh zh-CN please_hold "请稍候。"
zh zh-CN expected_wait "预计等待时间约为"
zh zh-CN minutes "分钟。"
zh zh-CN press_star_callback "如需回电，请按星号键。"
zh zh-CN callback_confirm "我们会给您回电。"
zh zh-CN leave_message "请在提示音后留言。"
zh zh-CN closed "现在是非工作时间，请在工作时间再来电。"
zh zh-CN goodbye "感谢您的来电，再见。"
zh zh-CN balance_is "您的余额为"
zh zh-CN point "点"

zh zh-TW welcome "歡迎致電客戶服務中心。"
zh zh-TW press1 "業務請按1，技術支援請按2。"
zh zh-TW please_hold "請稍候。"
zh zh-TW expected_wait "預計等候時間約為"
zh zh-TW minutes "分鐘。"
zh zh-TW press_star_callback "如需回電，請按星號鍵。"
zh zh-TW callback_confirm "我們會給您回電。"
zh zh-TW leave_message "請在提示音後留言。"
zh zh-TW closed "現在是非營業時間，請在營業時間再來電。"
zh zh-TW goodbye "感謝您的來電，再見。"
zh zh-TW balance_is "您的餘額為"
zh zh-TW point "點"

# ---- The sample company's IVR prompts: the texts in routing-rules/ivr/ivr.toml [prompts] -------
# Each text in the voice of its script (the "other language" prompts are in the other one).
ivr="$here/../../../routing-rules/ivr/ivr.toml"
if [ -f "$ivr" ]; then
  while IFS=$'\t' read -r lang name text; do
    if printf '%s' "$text" | grep -qP '[\x{4e00}-\x{9fff}]'; then voice=cmn; else voice=en-us; fi
    say "$lang" "$voice" "$name" "$text"
  done < <(python3 -c '
import sys, tomllib
for name, texts in tomllib.load(open(sys.argv[1], "rb")).get("prompts", {}).items():
    for lang, text in texts.items():
        print(f"{lang}\t{name}\t{text}")
' "$ivr")
fi

# ---- Music on hold: I–vi–IV–V in C, soft plucked chords with a bass, ~24 s ---------------
chord() {  # chord FILE SECONDS NOTES...
  local out="$1" len="$2"; shift 2
  local voices=()
  for note in "$@"; do voices+=(pluck "$note"); done
  sox -n -r 8000 -c "$#" "$tmp/c.wav" synth "$len" "${voices[@]}"
  sox "$tmp/c.wav" "$out" remix - fade 0.01 "$len" 0.4
}
parts=()
i=0
for rep in 1 2; do
  for c in "C3 E4 G4 C5" "A2 E4 A4 C5" "F2 F4 A4 C5" "G2 D4 G4 B4"; do
    # Two strums per chord, the second an octave-up arpeggio feel.
    chord "$tmp/p$i.wav" 1.5 $c; parts+=("$tmp/p$i.wav"); i=$((i+1))
    chord "$tmp/p$i.wav" 1.5 $(echo $c | awk '{print $1, $3, $4}'); parts+=("$tmp/p$i.wav"); i=$((i+1))
  done
done
sox "${parts[@]}" "$tmp/moh_raw.wav"
len="$(soxi -D "$tmp/moh_raw.wav")"
# A short fade at both ends so the loop restarts without a click.
sox "$tmp/moh_raw.wav" -r 8000 -c 1 -e u-law "$here/moh.wav" \
  reverb 40 50 60 lowpass 3400 norm -6 fade 0.2 "$len" 0.8

du -sh "$here" | cut -f1 | sed 's/^/total size: /'
