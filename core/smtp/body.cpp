#include "core/smtp/body.hpp"

#include <algorithm>

namespace postern::core::smtp {

namespace {

BodyRefusal nul_refusal(uint64_t size) {
  return BodyRefusal{Reply{554, "5.6.0", "Message contains NUL octets"}, "nul", size};
}

BodyRefusal bare_refusal(bool bare_lf, uint64_t size) {
  // CVE-2023-51764 class: bare LF / CR could smuggle a second message past other MTAs.
  return BodyRefusal{Reply{554, "5.5.2", "Message contains bare <LF> or <CR> (see RFC 5321 §2.3.8)"},
                     bare_lf ? "bare-lf" : "bare-cr", size};
}

}  // namespace

Reply too_big_reply() {
  return Reply{552, "5.3.4", "Message size exceeds fixed maximum message size"};
}

std::optional<BodyRefusal> data_refusal(const DataDecoder& dec) {
  if (dec.too_big()) return BodyRefusal{too_big_reply(), "too-big", dec.size()};
  if (dec.nul()) return nul_refusal(dec.size());
  if (dec.failed()) return bare_refusal(dec.bare_lf(), dec.size());
  return std::nullopt;
}

void BdatAssembler::start_chunk(uint64_t size, bool keep) {
  remaining_ = size;
  keep_ = keep;
}

size_t BdatAssembler::feed(std::string_view in, uint64_t max_size) {
  const size_t take = static_cast<size_t>(std::min<uint64_t>(remaining_, in.size()));
  if (take == 0) return 0;
  if (keep_ && size_ + take <= max_size) data_.append(in.substr(0, take));
  size_ += take;
  remaining_ -= take;
  return take;
}

std::optional<BodyRefusal> BdatAssembler::finish(BareLineEnding mode, std::string& out) {
  std::string message = std::move(data_);
  data_.clear();
  const LineCheck lc = check_line_endings(message, mode);
  if (lc.nul) return nul_refusal(message.size());
  if (mode == BareLineEnding::Reject && (lc.bare_lf || lc.bare_cr)) return bare_refusal(lc.bare_lf, message.size());
  out = std::move(message);
  return std::nullopt;
}

}  // namespace postern::core::smtp
