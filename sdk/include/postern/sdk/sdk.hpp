#pragma once
/** @file sdk.hpp Everything a plugin needs: include this one header. */
#include <postern/sdk/command.hpp>
#include <postern/sdk/event.hpp>
#include <postern/sdk/host.hpp>
#include <postern/sdk/mailbox.hpp>
#include <postern/sdk/outbound.hpp>
#include <postern/sdk/service.hpp>
#include <postern/sdk/plugin.hpp>
#include <postern/sdk/types.hpp>
