//! Where a dialog is in its life (RFC 3261 12, 12.3).

use serde::{Deserialize, Serialize};

/// The state of one dialog.
///
/// ```text
///  UAC:  Calling ──1xx with tag──▶ Early ──2xx──▶ Confirmed
///           └──────────────2xx with tag──────────────▲
///  UAS:  (request received) ──▶ Early ──our 2xx──▶ Confirmed
///
///  any state ──terminate──▶ Terminated
/// ```
///
/// A non-2xx final response, a BYE, a CANCEL or a timeout end a dialog;
/// which of them applies is the caller's knowledge (12.3), so it calls
/// [`Dialog::terminate`](crate::Dialog::terminate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DialogState {
    /// UAC only: the dialog-creating request is out and no tagged response came yet.
    /// The remote tag and remote target are not known. (RFC 3261 12.1.2 creates the
    /// UAC dialog at the first tagged response; sipbus keeps its own half from the start
    /// because it must cancel, hang up and report the call before that.)
    Calling,
    /// Established by a provisional response (or, UAS side, before our 2xx).
    Early,
    Confirmed,
    Terminated,
}
