//! Web chat channel: the session protocol (sans-IO) and its WebSocket driver.
