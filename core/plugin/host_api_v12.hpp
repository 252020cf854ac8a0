#pragma once
// The host functions added in ABI 1.2 (postern_abi.h): services and streams
// (host_api_service.cpp, backed by core/service/) and the directory and
// mailbox store (host_api_mailbox.cpp, backed by core/directory and
// core/mailstore). host_api.cpp puts them into the table.

#include <postern/abi/v1/postern_abi.h>

#include <string_view>

namespace postern::core::plugin::abi12 {

// --- services and streams (host_api_service.cpp) ---
postern_status_t service_register(postern_host_t* host, postern_str_t protocol, const postern_service_v1_t* svc,
                                  void* user);
postern_stream_t* stream_retain(postern_stream_t* s);
void stream_release(postern_stream_t* s);
postern_status_t stream_write(postern_stream_t* s, postern_bytes_t data);
size_t stream_queued(postern_stream_t* s);
postern_status_t stream_want_drain(postern_stream_t* s);
postern_status_t stream_pause(postern_stream_t* s, int32_t paused);
postern_status_t stream_starttls(postern_stream_t* s);
void stream_close(postern_stream_t* s);
postern_status_t stream_set_idle_timeout(postern_stream_t* s, uint64_t timeout_ms);
postern_status_t stream_post(postern_stream_t* s, postern_task_cb fn, void* user);
postern_status_t stream_get(postern_stream_t* s, uint32_t prop, postern_str_t* out);

// --- directory and mailbox store (host_api_mailbox.cpp) ---
postern_str_t last_error(postern_host_t* host);
/** Sets this thread's last_error text (any 1.2 function that fails). */
void set_last_error(std::string_view detail);
postern_status_t dir_authenticate(postern_host_t* host, postern_str_t login, postern_str_t password, uint32_t service,
                                  postern_account_info_t* out);
postern_status_t dir_account(postern_host_t* host, postern_str_t address, postern_account_info_t* out);
postern_status_t mbox_open(postern_host_t* host, postern_str_t account, postern_mailbox_t** out);
void mbox_release(postern_mailbox_t* mb);
void mresult_free(postern_mresult_t* r);
postern_status_t mbox_list_folders(postern_mailbox_t* mb, postern_mresult_t** out);
postern_status_t mbox_folder_status(postern_mailbox_t* mb, postern_str_t name, postern_mresult_t** out);
postern_status_t mbox_create_folder(postern_mailbox_t* mb, postern_str_t name, postern_str_t special_use);
postern_status_t mbox_delete_folder(postern_mailbox_t* mb, postern_str_t name);
postern_status_t mbox_rename_folder(postern_mailbox_t* mb, postern_str_t from, postern_str_t to);
postern_status_t mbox_subscribe(postern_mailbox_t* mb, postern_str_t name, int32_t subscribed);
postern_status_t mbox_claim_recent(postern_mailbox_t* mb, postern_str_t name, uint32_t* first_recent_uid);
postern_status_t mbox_changes_since(postern_mailbox_t* mb, postern_str_t name, uint32_t uidvalidity, uint64_t since,
                                    postern_mresult_t** out);
postern_status_t mbox_read_message(postern_mailbox_t* mb, postern_str_t folder, uint32_t uid, postern_mresult_t** out);
postern_status_t mbox_store_flags(postern_mailbox_t* mb, postern_str_t folder, const uint32_t* uids, size_t uid_count,
                                  uint32_t op, uint32_t flags, const postern_str_t* keywords,
                                  size_t keyword_count, int32_t has_unchanged_since, uint64_t unchanged_since,
                                  postern_mresult_t** out);
postern_status_t mbox_expunge(postern_mailbox_t* mb, postern_str_t folder, const uint32_t* uids, size_t uid_count,
                              uint32_t mode, postern_mresult_t** out);
postern_status_t mbox_append(postern_mailbox_t* mb, postern_str_t folder, postern_bytes_t message, uint32_t flags,
                             const postern_str_t* keywords, size_t keyword_count, int64_t internal_date,
                             postern_mresult_t** out);
postern_status_t mbox_copy(postern_mailbox_t* mb, postern_str_t from, const uint32_t* uids, size_t uid_count,
                           postern_str_t to, postern_mresult_t** out);
postern_status_t mbox_move(postern_mailbox_t* mb, postern_str_t from, const uint32_t* uids, size_t uid_count,
                           postern_str_t to, postern_mresult_t** out);
postern_status_t mbox_usage(postern_mailbox_t* mb, uint64_t* used_bytes, uint64_t* quota_bytes);
postern_status_t mbox_open_folder(postern_mailbox_t* mb, postern_str_t name, postern_folder_view_t** view,
                                  postern_mresult_t** out);
postern_status_t view_refresh(postern_folder_view_t* view, postern_mresult_t** out);
void view_release(postern_folder_view_t* view);

}  // namespace postern::core::plugin::abi12
