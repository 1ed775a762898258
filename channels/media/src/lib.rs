//! Media: RTP/RTCP legs, G.711, DTMF, jitter buffer, mixer, prompts and recording.
