#!/usr/bin/env python3
"""A real SIP UA (PJSIP via pjsua2) for the channel-sip tests.

Modes:
  phone  --hub HOST:PORT --user U --password P : register with digest, answer the first
          incoming call, wait for the hub's BYE, unregister.
  call   --hub HOST:PORT --to NUMBER [--bind IP] : call sip:NUMBER@HUB without registering,
          hang up 1 s after the answer (or report the final status).
Prints one line per step (`REGISTERED 200`, `INCOMING`, `CONFIRMED`, `DISCONNECTED <code>`,
`UNREGISTERED`) and exits 0 when the mode's script completed, 1 otherwise.
"""
import argparse
import sys
import time

import pjsua2 as pj

events = []


def say(line):
    events.append(line)
    print(line, flush=True)


class Call(pj.Call):
    def __init__(self, acc, call_id=pj.PJSUA_INVALID_ID):
        pj.Call.__init__(self, acc, call_id)
        self.confirmed_at = None
        self.done = False
        self.last_code = 0

    def onCallState(self, prm):
        ci = self.getInfo()
        if ci.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.confirmed_at = time.time()
            say("CONFIRMED")
        elif ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.last_code = ci.lastStatusCode
            self.done = True
            say("DISCONNECTED %d" % ci.lastStatusCode)


class Account(pj.Account):
    def __init__(self):
        pj.Account.__init__(self)
        self.reg_code = None
        self.calls = []

    def onRegState(self, prm):
        info = self.getInfo()
        if info.regIsActive:
            say("REGISTERED %d" % prm.code)
        elif prm.code // 100 == 2:
            say("UNREGISTERED")
        else:
            say("REGISTER_FAILED %d" % prm.code)
        self.reg_code = prm.code

    def onIncomingCall(self, prm):
        call = Call(self, prm.callId)
        self.calls.append(call)
        say("INCOMING")
        op = pj.CallOpParam()
        op.statusCode = 180
        call.answer(op)
        op = pj.CallOpParam()
        op.statusCode = 200
        call.answer(op)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["phone", "call"])
    ap.add_argument("--hub", required=True)
    ap.add_argument("--user", default="customer")
    ap.add_argument("--password", default="")
    ap.add_argument("--to", default="+8610")
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--rtp-port", type=int, default=42000)
    ap.add_argument("--timeout", type=float, default=20.0)
    args = ap.parse_args()

    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.logConfig.level = 1
    cfg.logConfig.consoleLevel = 1
    ep.libInit(cfg)
    tcfg = pj.TransportConfig()
    tcfg.port = 0
    tcfg.boundAddress = args.bind
    tcfg.publicAddress = args.bind
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
    ep.libStart()
    ep.audDevManager().setNullDev()
    for codec, prio in (("PCMU/8000", 255), ("PCMA/8000", 254)):
        try:
            ep.codecSetPriority(codec, prio)
        except pj.Error:
            pass

    acfg = pj.AccountConfig()
    acfg.mediaConfig.transportConfig.port = args.rtp_port
    acfg.mediaConfig.transportConfig.portRange = 20
    acfg.mediaConfig.transportConfig.boundAddress = args.bind
    host = args.hub.split(":")[0]
    if args.mode == "phone":
        acfg.idUri = "sip:%s@%s" % (args.user, host)
        acfg.regConfig.registrarUri = "sip:%s" % args.hub
        acfg.regConfig.timeoutSec = 300
        acfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", args.user, 0, args.password))
    else:
        acfg.idUri = "sip:%s@%s" % (args.user, args.bind)
    acc = Account()
    acc.create(acfg)

    ok = False
    deadline = time.time() + args.timeout
    call = None
    if args.mode == "call":
        call = Call(acc)
        op = pj.CallOpParam(True)
        call.makeCall("sip:%s@%s" % (args.to, args.hub), op)
    hung_up = False
    unregistering = False
    while time.time() < deadline:
        ep.libHandleEvents(20)
        if args.mode == "phone":
            if acc.calls and acc.calls[0].done and not unregistering:
                unregistering = True
                acc.setRegistration(False)
            if unregistering and "UNREGISTERED" in events:
                ok = "CONFIRMED" in events
                break
            if acc.reg_code is not None and acc.reg_code // 100 != 2 and not unregistering:
                break
        else:
            if call.confirmed_at and not hung_up and time.time() - call.confirmed_at > 1.0:
                hung_up = True
                call.hangup(pj.CallOpParam())
            if call.done:
                ok = True
                break
    for c in acc.calls:
        del c
    acc.calls = []
    call = None
    acc.shutdown()
    for _ in range(20):
        ep.libHandleEvents(10)
    ep.libDestroy()
    say("RESULT %s" % ("ok" if ok else "incomplete"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
