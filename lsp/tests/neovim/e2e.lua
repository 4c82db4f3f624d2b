-- End-to-end run of scl-lsp in a real editor, driven by lsp/tests/neovim.rs.
--
-- Headless Neovim opens an instance script of the example deployment (a copy
-- in $SCL_E2E_ROOT), starts the server ($SCL_LSP_BIN) with vim.lsp.start,
-- introduces a mistake and waits for its diagnostic, asks for hover and for
-- completion, renames a local, and writes everything it saw as JSON to
-- $SCL_E2E_OUT for the Rust test to assert on.

local server = assert(os.getenv('SCL_LSP_BIN'), 'SCL_LSP_BIN is not set')
local root = assert(os.getenv('SCL_E2E_ROOT'), 'SCL_E2E_ROOT is not set')
local out_path = assert(os.getenv('SCL_E2E_OUT'), 'SCL_E2E_OUT is not set')
local timeout = 15000
local result = {}

local function write_result()
  local file = assert(io.open(out_path, 'w'))
  file:write(vim.json.encode(result))
  file:close()
end

-- The (0-based) line and byte column of the first `needle` in the buffer.
local function find(buf, needle)
  for index, line in ipairs(vim.api.nvim_buf_get_lines(buf, 0, -1, false)) do
    local column = line:find(needle, 1, true)
    if column then
      return index - 1, column - 1
    end
  end
  error('not in the buffer: ' .. needle)
end

-- Position parameters for the cursor on `needle` (plus `shift` bytes), in the
-- encoding the client negotiated.
local function params_at(client, buf, needle, shift)
  local line, column = find(buf, needle)
  vim.api.nvim_win_set_cursor(0, { line + 1, column + (shift or 0) })
  return vim.lsp.util.make_position_params(0, client.offset_encoding)
end

local function request(client, buf, method, params)
  local response, err = client:request_sync(method, params, timeout, buf)
  assert(response, method .. ' got no response: ' .. tostring(err))
  assert(not response.err, method .. ' failed: ' .. vim.inspect(response.err))
  return response.result
end

local ok, err = pcall(function()
  vim.cmd('edit ' .. vim.fn.fnameescape(root .. '/scripts/read_temp.scl'))
  local buf = vim.api.nvim_get_current_buf()
  local client_id = assert(vim.lsp.start({ name = 'scl', cmd = { server }, root_dir = root }))
  assert(vim.wait(timeout, function()
    local client = vim.lsp.get_client_by_id(client_id)
    return client ~= nil and client.initialized and vim.lsp.buf_is_attached(buf, client_id)
  end, 20), 'the server did not initialize')
  local client = assert(vim.lsp.get_client_by_id(client_id))
  result.server_name = client.server_info and client.server_info.name
  result.offset_encoding = client.offset_encoding

  -- 1. A mistake typed into the buffer: an attribute the Pump template lacks.
  local line, column = find(buf, '"Temperature"')
  vim.api.nvim_buf_set_text(buf, line, column + 1, line, column + 12, { 'Temperatur' })
  assert(vim.wait(timeout, function() return #vim.diagnostic.get(buf) > 0 end, 20), 'no diagnostics arrived')
  result.diagnostics = {}
  for _, diagnostic in ipairs(vim.diagnostic.get(buf)) do
    table.insert(result.diagnostics, {
      code = diagnostic.code,
      message = diagnostic.message,
      line = diagnostic.lnum,
      column = diagnostic.col,
    })
  end

  -- 2. Hover over a module function.
  local hover = request(client, buf, 'textDocument/hover', params_at(client, buf, 'CachedCall'))
  result.hover = hover and hover.contents and hover.contents.value

  -- 3. Completion inside the string argument of Attributes.Get.
  local completion = request(client, buf, 'textDocument/completion', params_at(client, buf, 'Temperatur"', 10))
  local items = completion.items or completion
  result.completion = {}
  for _, item in ipairs(items) do
    table.insert(result.completion, item.label)
  end

  -- 4. Rename the local `t`, applying the edit as the editor does.
  local rename_params = params_at(client, buf, 't > limit')
  rename_params.newName = 'temperature'
  local edit = request(client, buf, 'textDocument/rename', rename_params)
  vim.lsp.util.apply_workspace_edit(edit, client.offset_encoding)
  result.renamed = table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), '\n')

  -- The edited buffer is checked again: still only the attribute mistake.
  assert(vim.wait(timeout, function()
    for _, diagnostic in ipairs(vim.diagnostic.get(buf)) do
      if diagnostic.code ~= 'SCL0506' then return false end
    end
    return #vim.diagnostic.get(buf) == 1
  end, 20), 'unexpected diagnostics after the rename')

  client:stop()
  vim.wait(timeout, function() return client:is_stopped() end, 20)
  result.stopped = client:is_stopped()
end)

result.ok = ok
result.error = (not ok) and tostring(err) or nil
write_result()
vim.cmd('qall!')
