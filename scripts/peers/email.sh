# Email channel peers (channels/email tests): swaks and Python's smtplib as SMTP/LMTP clients,
# aiosmtpd as the outbound relay, dovecot (started by the tests themselves, no system service)
# for IMAP IDLE. Sourced by scripts/test with peer_phase=apt, then =post.
case $peer_phase in
  apt)
    command -v swaks >/dev/null 2>&1 || need_apt+=(swaks libnet-ssleay-perl)
    [ -x /usr/sbin/dovecot ] || need_apt+=(dovecot-imapd)
    ;;
  post)
    python3 -c 'import aiosmtpd' 2>/dev/null || pip install -q aiosmtpd
    ;;
esac
