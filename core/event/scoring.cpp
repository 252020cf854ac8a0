#include "core/event/scoring.hpp"

#include "core/mime/mime.hpp"

#include <fmt/format.h>

namespace postern::core::event {
namespace {

std::string symbol_list(const SessionInfo& session, const Transaction& txn) {
  std::string out;
  auto add = [&out](const Symbol& s) {
    if (!out.empty()) out += ", ";
    out += fmt::format("{}({:.2f})", s.name, s.weight);
  };
  for (const Symbol& s : session.symbols) add(s);
  for (const Symbol& s : txn.symbols) add(s);
  return out;
}

}  // namespace

Outcome apply_score_policy(const config::ScoringPolicy& policy, const SessionInfo& session, Transaction& txn) {
  const double total = session.score + txn.score;
  auto reached = [total](double threshold) { return threshold > 0 && total >= threshold; };
  Outcome o;
  if (reached(policy.reject)) {
    o.verdict = Verdict::Reject;
    o.code = 550;
    o.enhanced = "5.7.1";
    o.text = fmt::format("Message rejected as spam (score {:.2f})", total);
    o.decided_by = "scoring";
    return o;
  }
  if (reached(policy.add_header) || reached(policy.mark_subject) || reached(policy.quarantine)) {
    txn.header_edits.push_back({HeaderEdit::Kind::Add, "X-Spam-Flag", "YES", 0, true});
    txn.header_edits.push_back(
        {HeaderEdit::Kind::Add, "X-Spam-Score", fmt::format("{:.2f} ({})", total, symbol_list(session, txn)), 0, true});
  }
  if (reached(policy.mark_subject) && !policy.subject_tag.empty()) {
    std::string subject;
    if (txn.message) {
      if (auto s = txn.message->header("Subject")) subject = std::string(*s);
    }
    if (!subject.starts_with(policy.subject_tag)) {
      txn.header_edits.push_back(
          {HeaderEdit::Kind::Change, "Subject", policy.subject_tag + (subject.empty() ? "" : " " + subject), 0, false});
    }
  }
  if (reached(policy.quarantine)) {
    o.verdict = Verdict::Quarantine;
    o.decided_by = "scoring";
  }
  return o;
}

}  // namespace postern::core::event
