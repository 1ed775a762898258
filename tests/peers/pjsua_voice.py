#!/usr/bin/env python3
"""A real SIP phone (PJSIP via pjsua2) driven line by line from a Rust test.

Commands on stdin (one per line):
  register HOST:PORT USER PASSWORD   register with digest (a desk phone)
  call URI                           place a call
  dtmf DIGITS                        send RFC 2833 digits on the call
  hangup                             hang up the call
  hold | unhold                      re-INVITE the call sendonly / sendrecv
  rec WAV                            from now on record what the phone hears into WAV (the
                                     previous recording is closed, complete on disk)
  quit
Options: --play WAV (what the phone's microphone sends, looping), --record WAV (what it hears),
--auto-answer (answer incoming calls), --rtp-port N (start of this process's RTP range).

Events on stdout, one per line: READY, REGISTERED <code>, REGISTER_FAILED <code>, INCOMING,
CONFIRMED, MEDIA <dir>, DTMF <digit> (received), DISCONNECTED <code>, ERROR <text>, RECORDING <wav>, BYE.
"""
import argparse
import select
import sys
import time

import pjsua2 as pj


def say(line):
    print(line, flush=True)


class Phone:
    def __init__(self, args):
        self.args = args
        self.call = None
        self.player = None
        self.recorder = None
        self.media = None

    def record(self, path):
        """Closes the current recording (its WAV header is written) and starts one in `path`."""
        if self.recorder is not None and self.media is not None:
            try:
                self.media.stopTransmit(self.recorder)
            except pj.Error:
                pass
        self.recorder = None
        self.args.record = path
        self.recorder = pj.AudioMediaRecorder()
        self.recorder.createRecorder(path)
        if self.media is not None:
            self.media.startTransmit(self.recorder)


class Call(pj.Call):
    def __init__(self, phone, acc, call_id=pj.PJSUA_INVALID_ID):
        pj.Call.__init__(self, acc, call_id)
        self.phone = phone
        self.done = False

    def onCallState(self, prm):
        ci = self.getInfo()
        if ci.state == pj.PJSIP_INV_STATE_CONFIRMED:
            say("CONFIRMED")
        elif ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.done = True
            say("DISCONNECTED %d" % ci.lastStatusCode)

    def onDtmfDigit(self, prm):
        # Digits the hub sends us (RFC 4733 telephone-event), e.g. from the agent's keypad.
        say("DTMF %s" % prm.digit)

    def onCallMediaState(self, prm):
        ci = self.getInfo()
        for i, mi in enumerate(ci.media):
            # Held by the other side (it sends only, e.g. music): still heard and recorded.
            held = mi.status == pj.PJSUA_CALL_MEDIA_REMOTE_HOLD
            if mi.type != pj.PJMEDIA_TYPE_AUDIO or (mi.status != pj.PJSUA_CALL_MEDIA_ACTIVE and not held):
                continue
            media = self.getAudioMedia(i)
            phone = self.phone
            phone.media = media
            if phone.args.play:
                if phone.player is None:
                    phone.player = pj.AudioMediaPlayer()
                    phone.player.createPlayer(phone.args.play, 0)
                phone.player.startTransmit(media)
            if phone.args.record:
                if phone.recorder is None:
                    phone.recorder = pj.AudioMediaRecorder()
                    phone.recorder.createRecorder(phone.args.record)
                media.startTransmit(phone.recorder)
            say("MEDIA %s" % ("remote_hold" if held else "active"))


class Account(pj.Account):
    def __init__(self, phone):
        pj.Account.__init__(self)
        self.phone = phone

    def onRegState(self, prm):
        info = self.getInfo()
        if info.regIsActive:
            say("REGISTERED %d" % prm.code)
        elif prm.code // 100 != 2:
            say("REGISTER_FAILED %d" % prm.code)

    def onIncomingCall(self, prm):
        call = Call(self.phone, self, prm.callId)
        self.phone.call = call
        say("INCOMING")
        op = pj.CallOpParam()
        op.statusCode = 180
        call.answer(op)
        if self.phone.args.auto_answer:
            op = pj.CallOpParam()
            op.statusCode = 200
            call.answer(op)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--rtp-port", type=int, default=44000)
    ap.add_argument("--play")
    ap.add_argument("--record")
    ap.add_argument("--auto-answer", action="store_true")
    ap.add_argument("--user", default="customer")
    ap.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args()
    phone = Phone(args)

    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.logConfig.level = 1
    cfg.logConfig.consoleLevel = 1
    cfg.medConfig.clockRate = 8000
    cfg.medConfig.sndClockRate = 8000
    cfg.medConfig.noVad = True
    ep.libInit(cfg)
    tcfg = pj.TransportConfig()
    tcfg.port = 0
    tcfg.boundAddress = args.bind
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
    ep.libStart()
    ep.audDevManager().setNullDev()
    for codec, prio in (("PCMU/8000", 255), ("PCMA/8000", 254)):
        try:
            ep.codecSetPriority(codec, prio)
        except pj.Error:
            pass
    for codec in ("speex/16000", "speex/8000", "speex/32000", "iLBC/8000", "GSM/8000", "G722/16000", "opus/48000"):
        try:
            ep.codecSetPriority(codec, 0)
        except pj.Error:
            pass

    acc = None
    deadline = time.time() + args.timeout
    say("READY")
    buf = ""
    while time.time() < deadline:
        ep.libHandleEvents(10)
        ready, _, _ = select.select([sys.stdin], [], [], 0)
        if not ready:
            continue
        chunk = sys.stdin.readline()
        if chunk == "":
            break
        words = chunk.split()
        if not words:
            continue
        cmd = words[0]
        try:
            if cmd == "register":
                hub, user, password = words[1], words[2], words[3]
                acfg = pj.AccountConfig()
                acfg.idUri = "sip:%s@%s" % (user, hub.split(":")[0])
                acfg.regConfig.registrarUri = "sip:%s" % hub
                acfg.regConfig.timeoutSec = 300
                acfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", user, 0, password))
                acfg.mediaConfig.transportConfig.port = args.rtp_port
                acfg.mediaConfig.transportConfig.portRange = 20
                acfg.mediaConfig.transportConfig.boundAddress = args.bind
                acc = Account(phone)
                acc.create(acfg)
            elif cmd == "call":
                if acc is None:
                    acfg = pj.AccountConfig()
                    acfg.idUri = "sip:%s@%s" % (args.user, args.bind)
                    acfg.mediaConfig.transportConfig.port = args.rtp_port
                    acfg.mediaConfig.transportConfig.portRange = 20
                    acfg.mediaConfig.transportConfig.boundAddress = args.bind
                    acc = Account(phone)
                    acc.create(acfg)
                call = Call(phone, acc)
                phone.call = call
                call.makeCall(words[1], pj.CallOpParam(True))
            elif cmd == "dtmf" and phone.call is not None:
                phone.call.dialDtmf(words[1])
            elif cmd == "hangup" and phone.call is not None:
                phone.call.hangup(pj.CallOpParam())
            elif cmd == "hold" and phone.call is not None:
                phone.call.setHold(pj.CallOpParam())
            elif cmd == "unhold" and phone.call is not None:
                op = pj.CallOpParam()
                op.opt.flag = pj.PJSUA_CALL_UNHOLD
                phone.call.reinvite(op)
            elif cmd == "rec":
                phone.record(words[1])
                say("RECORDING %s" % words[1])
            elif cmd == "quit":
                break
        except pj.Error as e:
            say("ERROR %s" % e.info())
    # Orderly teardown: calls first, then the library.
    if phone.call is not None and not phone.call.done:
        try:
            phone.call.hangup(pj.CallOpParam())
        except pj.Error:
            pass
        for _ in range(50):
            ep.libHandleEvents(10)
    phone.call = None
    phone.media = None
    phone.player = None
    phone.recorder = None
    if acc is not None:
        acc.shutdown()
    for _ in range(20):
        ep.libHandleEvents(10)
    ep.libDestroy()
    say("BYE")


if __name__ == "__main__":
    main()
