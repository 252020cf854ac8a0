#include "core/dns/answer_cache.hpp"

#include <algorithm>

namespace postern::core::dns {

std::string AnswerCache::key(std::string_view name, uint16_t type) {
  if (name.size() > 1 && name.back() == '.') name.remove_suffix(1);
  std::string out = std::to_string(type);
  out.push_back('/');
  out.reserve(out.size() + name.size());
  // ASCII only: RFC 4343 §3 makes DNS case-insensitivity ASCII-only.
  for (char c : name) out.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c);
  return out;
}

void AnswerCache::put(const Answer& answer, Clock::time_point now) {
  if (capacity_ == 0 || answer.min_ttl == 0) return;
  if (answer.status != Status::Ok && answer.status != Status::NoData && answer.status != Status::NxDomain)
    return;
  std::string k = key(answer.name, answer.type);
  if (auto it = index_.find(k); it != index_.end()) {
    it->second->answer = answer;
    it->second->stored = now;
    lru_.splice(lru_.begin(), lru_, it->second);
    return;
  }
  if (index_.size() >= capacity_) {
    index_.erase(lru_.back().key);
    lru_.pop_back();
  }
  lru_.push_front(Entry{k, answer, now});
  index_.emplace(std::move(k), lru_.begin());
}

std::optional<Answer> AnswerCache::get(std::string_view name, uint16_t type, Clock::time_point now) {
  if (capacity_ == 0) return std::nullopt;
  auto it = index_.find(key(name, type));
  if (it == index_.end()) return std::nullopt;
  Entry& entry = *it->second;
  const auto age = std::chrono::duration_cast<std::chrono::seconds>(std::max(now - entry.stored, Clock::duration{}));
  if (age >= std::chrono::seconds(entry.answer.min_ttl)) {
    lru_.erase(it->second);
    index_.erase(it);
    return std::nullopt;
  }
  lru_.splice(lru_.begin(), lru_, it->second);
  const auto spent = static_cast<uint32_t>(age.count());
  Answer out = entry.answer;
  out.name = std::string(name);
  out.min_ttl -= spent;
  // Every record's TTL is >= min_ttl > spent, so this cannot underflow; stay defensive anyway.
  for (Record& record : out.records) record.ttl = record.ttl > spent ? record.ttl - spent : 0;
  return out;
}

}  // namespace postern::core::dns
