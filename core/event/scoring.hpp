#pragma once
// The score policy (Rspamd's model): hooks add weighted symbols; at data_end,
// when no hook decided, the total (session + transaction) is turned into an
// action at the manifest's thresholds (<scoring>): reject, quarantine, mark the
// subject, add headers. An explicit verdict always outranks scores.

#include "core/config/manifest.hpp"
#include "core/event/event.hpp"

namespace postern::core::event {

/**
 * Applies `policy` to the transaction: may queue header edits (X-Spam-*,
 * Subject tag) and returns Reject / Quarantine, or Continue.
 */
Outcome apply_score_policy(const config::ScoringPolicy& policy, const SessionInfo& session, Transaction& txn);

}  // namespace postern::core::event
