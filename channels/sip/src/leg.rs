//! One call leg's state, sans-IO: which commands the hub may give in which state, and which
//! event (if any) a signal from the dialog produces. The driver asks this before it touches
//! the dialog, and reports what the dialog did; each leg ends with exactly one terminal event.

use std::fmt;

/// Which side started the leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The remote sent the INVITE (customer from a trunk, or a desk phone); we are the UAS.
    Inbound,
    /// We sent the INVITE (`originate`); we are the UAC.
    Outbound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegState {
    /// Inbound INVITE received, nothing but 100 sent.
    Offered,
    /// Inbound: 18x sent. Outbound: 18x received.
    Early,
    /// Inbound: 200 sent, waiting for the ACK.
    Answering,
    /// Outbound: INVITE sent, no provisional yet.
    Calling,
    Established,
    Ended,
}

/// Who ended the leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    Local,
    Remote,
}

/// Why a leg ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndCause {
    /// BYE after the call was up.
    Normal,
    /// CANCEL before an answer (by the caller, or our hangup of a ringing outbound leg).
    Cancelled,
    /// We answered an inbound INVITE with this final non-2xx status.
    Rejected(u16),
    /// Our 200 was never ACKed (64*T1).
    NoAck,
    /// Transport or transaction failure after the call was up.
    Failure,
}

/// Hub commands, as far as the leg state cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Ringing,
    Answer,
    Reject(u16),
    Hangup,
    Reinvite,
}

/// What the driver must do for an accepted command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    SendProvisional,
    SendAnswer,
    /// Final non-2xx to the inbound INVITE.
    SendReject(u16),
    SendCancel,
    SendBye,
    SendReinvite,
}

/// What the dialog reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Outbound: a provisional response (not 100).
    Provisional(u16),
    /// Outbound: 2xx (ACK sent by the stack).
    Answered,
    /// Outbound: final non-2xx, or a timeout (408) / transport failure (503).
    FinalFailure(u16),
    /// Inbound: the ACK for our 200 arrived.
    Acked,
    /// Inbound: the caller's CANCEL (487 sent by the stack).
    RemoteCancel,
    /// The remote's BYE.
    RemoteBye,
    /// Inbound: no ACK for our 200.
    NoAck,
    /// The dialog died without a BYE (transport failure, in-dialog 408/481).
    DialogFailure,
    ReinviteResult {
        ok: bool,
    },
}

/// The event the hub is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Progress(u16),
    Answered,
    /// Outbound leg that never got up. Terminal.
    Failed(u16),
    /// Terminal for every leg that is not `Failed`.
    Ended {
        by: Party,
        cause: EndCause,
    },
    ReinviteAnswered,
    ReinviteFailed,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LegError {
    #[error("{command:?} is not allowed on an {direction:?} leg in state {state:?}")]
    NotAllowed {
        command: Command,
        direction: Direction,
        state: LegState,
    },
    #[error("a re-INVITE is already in progress")]
    ReinvitePending,
}

#[derive(Debug, Clone)]
pub struct Leg {
    direction: Direction,
    state: LegState,
    reinvite_pending: bool,
}

impl Leg {
    pub fn inbound() -> Self {
        Leg {
            direction: Direction::Inbound,
            state: LegState::Offered,
            reinvite_pending: false,
        }
    }

    pub fn outbound() -> Self {
        Leg {
            direction: Direction::Outbound,
            state: LegState::Calling,
            reinvite_pending: false,
        }
    }

    pub fn state(&self) -> LegState {
        self.state
    }

    pub fn direction(&self) -> Direction {
        self.direction
    }

    pub fn is_ended(&self) -> bool {
        self.state == LegState::Ended
    }

    /// Accept or refuse a hub command. A command that ends the leg returns its terminal
    /// outcome at once: the hub learns the leg is over when it asked, and the dialog's own
    /// later report of the same end is ignored.
    pub fn command(&mut self, command: Command) -> Result<(Action, Option<Outcome>), LegError> {
        use Direction::*;
        use LegState::*;
        let refused = LegError::NotAllowed {
            command,
            direction: self.direction,
            state: self.state,
        };
        let ended = |cause| {
            Some(Outcome::Ended {
                by: Party::Local,
                cause,
            })
        };
        let (action, outcome, next) = match (self.direction, self.state, command) {
            (Inbound, Offered | Early, Command::Ringing) => (Action::SendProvisional, None, Early),
            (Inbound, Offered | Early, Command::Answer) => (Action::SendAnswer, None, Answering),
            (Inbound, Offered | Early, Command::Reject(code)) if (300..700).contains(&code) => (
                Action::SendReject(code),
                ended(EndCause::Rejected(code)),
                Ended,
            ),
            // Hanging up a call we never answered: 480, the caller hears "unavailable".
            (Inbound, Offered | Early, Command::Hangup) => (
                Action::SendReject(480),
                ended(EndCause::Rejected(480)),
                Ended,
            ),
            (Inbound, Answering, Command::Hangup) | (_, Established, Command::Hangup) => {
                (Action::SendBye, ended(EndCause::Normal), Ended)
            }
            (Outbound, Calling | Early, Command::Hangup) => {
                (Action::SendCancel, ended(EndCause::Cancelled), Ended)
            }
            (_, Established, Command::Reinvite) => {
                if self.reinvite_pending {
                    return Err(LegError::ReinvitePending);
                }
                self.reinvite_pending = true;
                (Action::SendReinvite, None, Established)
            }
            _ => return Err(refused),
        };
        self.state = next;
        Ok((action, outcome))
    }

    /// Fold in what the dialog reported; returns the event to tell the hub, if any.
    pub fn signal(&mut self, signal: Signal) -> Option<Outcome> {
        use Direction::*;
        use LegState::*;
        if self.state == Ended {
            return None;
        }
        let remote_end = |cause| Outcome::Ended {
            by: Party::Remote,
            cause,
        };
        let (outcome, next) = match (self.direction, self.state, signal) {
            (Outbound, Calling | Early, Signal::Provisional(code)) => {
                (Some(Outcome::Progress(code)), Early)
            }
            (Outbound, Calling | Early, Signal::Answered) => (Some(Outcome::Answered), Established),
            (Outbound, Calling | Early, Signal::FinalFailure(code)) => {
                (Some(Outcome::Failed(code)), Ended)
            }
            (Outbound, Calling | Early, Signal::DialogFailure) => {
                (Some(Outcome::Failed(503)), Ended)
            }
            (Inbound, Answering, Signal::Acked) => (None, Established),
            (Inbound, Offered | Early, Signal::RemoteCancel) => {
                (Some(remote_end(EndCause::Cancelled)), Ended)
            }
            (Inbound, Answering, Signal::NoAck) => (Some(remote_end(EndCause::NoAck)), Ended),
            (_, Answering | Established, Signal::RemoteBye) => {
                (Some(remote_end(EndCause::Normal)), Ended)
            }
            // A BYE before any answer is a protocol slip of the peer; treat it as its hang-up.
            (Inbound, Offered | Early, Signal::RemoteBye) => {
                (Some(remote_end(EndCause::Cancelled)), Ended)
            }
            (_, Answering | Established, Signal::DialogFailure) => {
                (Some(remote_end(EndCause::Failure)), Ended)
            }
            (_, Established, Signal::ReinviteResult { ok }) if self.reinvite_pending => {
                self.reinvite_pending = false;
                let o = if ok {
                    Outcome::ReinviteAnswered
                } else {
                    Outcome::ReinviteFailed
                };
                (Some(o), Established)
            }
            // Duplicates and late reports (a 180 after the 200, a second ACK): nothing to say.
            (_, state, _) => (None, state),
        };
        self.state = next;
        outcome
    }
}

impl fmt::Display for LegState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(by: Party, cause: EndCause) -> Option<Outcome> {
        Some(Outcome::Ended { by, cause })
    }

    #[test]
    fn inbound_answer_ack_remote_bye() {
        let mut leg = Leg::inbound();
        assert_eq!(
            leg.command(Command::Ringing).unwrap(),
            (Action::SendProvisional, None)
        );
        assert_eq!(
            leg.command(Command::Answer).unwrap(),
            (Action::SendAnswer, None)
        );
        assert_eq!(leg.state(), LegState::Answering);
        assert_eq!(leg.signal(Signal::Acked), None);
        assert_eq!(leg.state(), LegState::Established);
        assert_eq!(
            leg.signal(Signal::RemoteBye),
            ended(Party::Remote, EndCause::Normal)
        );
        // Exactly one terminal event.
        assert_eq!(leg.signal(Signal::RemoteBye), None);
        assert_eq!(leg.signal(Signal::DialogFailure), None);
        assert!(leg.command(Command::Hangup).is_err());
    }

    #[test]
    fn inbound_cancel_and_reject_and_unanswered_hangup() {
        let mut leg = Leg::inbound();
        leg.command(Command::Ringing).unwrap();
        assert_eq!(
            leg.signal(Signal::RemoteCancel),
            ended(Party::Remote, EndCause::Cancelled)
        );
        assert!(leg.command(Command::Answer).is_err());

        let mut leg = Leg::inbound();
        assert_eq!(
            leg.command(Command::Reject(486)).unwrap(),
            (
                Action::SendReject(486),
                ended(Party::Local, EndCause::Rejected(486))
            )
        );
        // The stack's later report of the same end is swallowed.
        assert_eq!(leg.signal(Signal::RemoteCancel), None);

        let mut leg = Leg::inbound();
        assert!(
            leg.command(Command::Reject(200)).is_err(),
            "2xx is not a rejection"
        );
        assert_eq!(
            leg.command(Command::Hangup).unwrap().0,
            Action::SendReject(480)
        );
    }

    #[test]
    fn inbound_no_ack_and_hangup_while_waiting_for_ack() {
        let mut leg = Leg::inbound();
        leg.command(Command::Answer).unwrap();
        assert!(leg.command(Command::Ringing).is_err());
        assert_eq!(
            leg.signal(Signal::NoAck),
            ended(Party::Remote, EndCause::NoAck)
        );

        let mut leg = Leg::inbound();
        leg.command(Command::Answer).unwrap();
        assert_eq!(
            leg.command(Command::Hangup).unwrap(),
            (Action::SendBye, ended(Party::Local, EndCause::Normal))
        );
    }

    #[test]
    fn outbound_progress_answer_hangup() {
        let mut leg = Leg::outbound();
        assert!(leg.command(Command::Answer).is_err());
        assert!(leg.command(Command::Ringing).is_err());
        assert_eq!(
            leg.signal(Signal::Provisional(180)),
            Some(Outcome::Progress(180))
        );
        assert_eq!(
            leg.signal(Signal::Provisional(183)),
            Some(Outcome::Progress(183))
        );
        assert_eq!(leg.signal(Signal::Answered), Some(Outcome::Answered));
        assert_eq!(
            leg.signal(Signal::Provisional(180)),
            None,
            "late 18x ignored"
        );
        assert_eq!(
            leg.signal(Signal::Answered),
            None,
            "retransmitted 2xx ignored"
        );
        assert_eq!(
            leg.command(Command::Hangup).unwrap(),
            (Action::SendBye, ended(Party::Local, EndCause::Normal))
        );
    }

    #[test]
    fn outbound_failure_and_cancel() {
        let mut leg = Leg::outbound();
        assert_eq!(
            leg.signal(Signal::FinalFailure(486)),
            Some(Outcome::Failed(486))
        );
        assert_eq!(leg.signal(Signal::Answered), None);

        let mut leg = Leg::outbound();
        leg.signal(Signal::Provisional(180));
        assert_eq!(
            leg.command(Command::Hangup).unwrap(),
            (Action::SendCancel, ended(Party::Local, EndCause::Cancelled))
        );
        // The 487 that follows our CANCEL is not a second event.
        assert_eq!(leg.signal(Signal::FinalFailure(487)), None);
    }

    #[test]
    fn reinvite_one_at_a_time() {
        let mut leg = Leg::outbound();
        assert!(
            leg.command(Command::Reinvite).is_err(),
            "not before the answer"
        );
        leg.signal(Signal::Answered);
        assert_eq!(
            leg.command(Command::Reinvite).unwrap().0,
            Action::SendReinvite
        );
        assert_eq!(
            leg.command(Command::Reinvite),
            Err(LegError::ReinvitePending)
        );
        assert_eq!(
            leg.signal(Signal::ReinviteResult { ok: false }),
            Some(Outcome::ReinviteFailed)
        );
        leg.command(Command::Reinvite).unwrap();
        assert_eq!(
            leg.signal(Signal::ReinviteResult { ok: true }),
            Some(Outcome::ReinviteAnswered)
        );
        assert_eq!(
            leg.signal(Signal::ReinviteResult { ok: true }),
            None,
            "no result without a request"
        );
    }

    /// Seeded random walk: whatever the order of commands and signals, a leg reports at most
    /// one terminal event and nothing after it, and never panics.
    #[test]
    fn random_sequences_have_one_terminal_event() {
        let commands = [
            Command::Ringing,
            Command::Answer,
            Command::Reject(486),
            Command::Hangup,
            Command::Reinvite,
        ];
        let signals = [
            Signal::Provisional(180),
            Signal::Answered,
            Signal::FinalFailure(408),
            Signal::Acked,
            Signal::RemoteCancel,
            Signal::RemoteBye,
            Signal::NoAck,
            Signal::DialogFailure,
            Signal::ReinviteResult { ok: true },
        ];
        let mut seed: u64 = 0x5eed;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..5000 {
            let mut leg = if next() % 2 == 0 {
                Leg::inbound()
            } else {
                Leg::outbound()
            };
            let mut terminal = 0;
            for _ in 0..12 {
                let r = next();
                let outcome = if r % 2 == 0 {
                    leg.command(commands[(r >> 8) as usize % commands.len()])
                        .ok()
                        .and_then(|(_, o)| o)
                } else {
                    leg.signal(signals[(r >> 8) as usize % signals.len()])
                };
                if terminal > 0 {
                    assert_eq!(outcome, None, "event after the terminal one");
                }
                if matches!(outcome, Some(Outcome::Ended { .. } | Outcome::Failed(_))) {
                    terminal += 1;
                    assert!(leg.is_ended());
                }
            }
            assert!(terminal <= 1);
        }
    }
}
