#include "core/event/scoring.hpp"

#include <gtest/gtest.h>

namespace postern::core::event {
namespace {

struct ScoreCase {
  double session_score;
  double txn_score;
  Verdict verdict;
  bool flagged;
  bool subject_changed;
};

class ScoringPolicyTest : public ::testing::TestWithParam<ScoreCase> {};

TEST_P(ScoringPolicyTest, TotalMapsToActionAtThresholds) {
  config::ScoringPolicy policy;
  policy.add_header = 5;
  policy.mark_subject = 8;
  policy.quarantine = 12;
  policy.reject = 15;
  const ScoreCase& c = GetParam();
  SessionInfo session;
  session.score = c.session_score;
  Transaction txn;
  txn.add_symbol({"SYM", c.txn_score, "", "test"});
  Outcome o = apply_score_policy(policy, session, txn);
  EXPECT_EQ(o.verdict, c.verdict);
  bool flagged = false, subject = false;
  for (const HeaderEdit& e : txn.header_edits) {
    flagged |= e.name == "X-Spam-Flag";
    subject |= e.name == "Subject";
  }
  EXPECT_EQ(flagged, c.flagged);
  EXPECT_EQ(subject, c.subject_changed);
}

INSTANTIATE_TEST_SUITE_P(Thresholds, ScoringPolicyTest,
                         ::testing::Values(ScoreCase{0, 1, Verdict::Continue, false, false},
                                           ScoreCase{2, 3, Verdict::Continue, true, false},
                                           ScoreCase{0, 8.5, Verdict::Continue, true, true},
                                           ScoreCase{6, 6, Verdict::Quarantine, true, true},
                                           ScoreCase{10, 5, Verdict::Reject, false, false},
                                           ScoreCase{0, -3, Verdict::Continue, false, false}));

TEST(ScoringPolicyTest, ZeroThresholdDisablesAnAction) {
  config::ScoringPolicy policy;
  policy.add_header = 0;
  policy.reject = 0;
  SessionInfo session;
  Transaction txn;
  txn.add_symbol({"BIG", 1000, "", "test"});
  EXPECT_EQ(apply_score_policy(policy, session, txn).verdict, Verdict::Continue);
  EXPECT_TRUE(txn.header_edits.empty());
}

}  // namespace
}  // namespace postern::core::event
