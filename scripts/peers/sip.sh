# SIP channel peers (channels/sip tests): SIPp for scenarios and load, PJSIP (pjsua2) as a
# real desk phone / trunk UA. Sourced by scripts/test with peer_phase=apt, then =post.
case $peer_phase in
  apt)  command -v sipp >/dev/null 2>&1 || need_apt+=(sip-tester)
        command -v openssl >/dev/null 2>&1 || need_apt+=(openssl) ;;  # TLS test certificate
  post) python3 -c 'import pjsua2' 2>/dev/null || pip install -q pjsua2-python ;;
esac
