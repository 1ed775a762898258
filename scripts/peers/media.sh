# Media (channels/media): headless Chromium for the WebRTC leg's browser test
# (channels/media/tests/browser.rs).
case $peer_phase in
  apt) [ -x /usr/bin/chromium ] || need_apt+=(chromium) ;;
  post) : ;;
esac
