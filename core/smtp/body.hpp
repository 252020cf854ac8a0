#pragma once
// Message body assembly: DATA through the DataDecoder (dot-unstuffing, end
// marker, smuggling checks) and BDAT chunks (RFC 3030) appended up to the size
// limit, each ending in the message or the reply that refuses it. Pure.

#include "core/smtp/data_decoder.hpp"
#include "core/smtp/reply.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace postern::core::smtp {

/** Why a body is refused: the reply, and the outcome word of the transaction's log line. */
struct BodyRefusal {
  Reply reply;
  std::string outcome;  // "too-big", "nul", "bare-lf", "bare-cr"
  uint64_t size = 0;
};

/** The refusal a finished DataDecoder asks for; nullopt when its message is acceptable. */
std::optional<BodyRefusal> data_refusal(const DataDecoder& decoder);

/** 552 5.3.4 for a message over the size limit. */
Reply too_big_reply();

/** The BDAT chunks of one transaction. */
class BdatAssembler {
 public:
  /**
   * Starts a chunk of `size` octets.
   * @param keep false when the transaction already failed: the octets are read and dropped.
   */
  void start_chunk(uint64_t size, bool keep);
  /** Takes octets of the current chunk. @return octets of `in` consumed. */
  size_t feed(std::string_view in, uint64_t max_size);
  /** The current chunk is complete. */
  bool chunk_done() const { return remaining_ == 0; }
  /** Octets received in all chunks (also those dropped). */
  uint64_t size() const { return size_; }
  /** Forgets the octets kept so far (the transaction failed). */
  void drop() { data_.clear(); }
  /**
   * The message after the LAST chunk, checked for NUL and (in Reject mode) bare
   * line endings; in Normalize mode bare line endings are rewritten.
   * @return the refusal, or nullopt with the message moved into `out`.
   */
  std::optional<BodyRefusal> finish(BareLineEnding mode, std::string& out);

 private:
  std::string data_;
  uint64_t size_ = 0;
  uint64_t remaining_ = 0;
  bool keep_ = false;
};

}  // namespace postern::core::smtp
